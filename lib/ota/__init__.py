"""micropython-ota: signed firmware updates over MQTT with trial boot and rollback."""

__version__ = "0.1.0"
