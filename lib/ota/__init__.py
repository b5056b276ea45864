"""micropython-ota: signed firmware updates with trial boot and rollback.

The public API is small; each call imports only what it needs, to spare RAM:

    import ota
    ota.boot()                  # in boot.py: arms the watchdog on a trial boot
    ota.confirm([check, ...])   # in main.py, once the application is healthy
    ota.feed()                  # in the application's loop while on trial

The updater core is `ota.updater.Updater`; the MQTT transport is `ota.transport`."""

__version__ = "0.1.0"


def boot():
    """Call first in boot.py: on a trial boot, arms the watchdog (settings: ota_config.json)."""
    from ota import config, trial

    cfg = config.load()
    unload("config")
    return trial.on_boot(cfg["wdt_ms"], cfg["confirm_within_ms"])


def confirm(checks=()):
    from ota import trial

    return trial.confirm(checks)


def feed():
    from ota import trial

    trial.feed()


def unload(*names):
    """Forget the `ota` modules a step is done with (`unload("config")`): once nothing refers to
    them their bytecode goes back to the heap; an import loads them again."""
    import sys

    package = globals()
    for name in names:
        sys.modules.pop("ota." + name, None)
        package.pop(name, None)
