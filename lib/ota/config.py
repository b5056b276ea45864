"""The device's OTA settings: `ota_config.json` at the filesystem root, written at provisioning.

Only what differs from the defaults needs to be in the file. Certificates and keys are separate
DER files named here (the form MicroPython's `tls` loads on every port). A broker password, when
a broker uses passwords instead of client certificates, and the Wi-Fi password are the secrets
in this file."""
import json

CONFIG_FILE = "ota_config.json"

DEFAULTS = {
    "device_id": None,  # default: machine.unique_id() in hex
    "board": "esp32-generic",  # the board class id releases are signed for
    "fleet": "default",  # topic level names: docs/PROTOCOL.md
    "group": None,
    "root": "ota",
    # host, port (default 8883 with TLS, 1883 without), tls (bool), ca / cert / key (DER file
    # names on the device), server_hostname, user, password, keepalive (s)
    "broker": {"host": "127.0.0.1", "tls": True, "ca": "certs/ca.der", "keepalive": 30},
    # The station the service brings up (ota.net): ssid, password, and optionally ifconfig
    # [ip, netmask, gateway, dns], hostname, country, connect_timeout_s, retry_max_s.
    # None: the application manages the radio itself.
    "wifi": None,
    "install": "now",  # when a verified update may be installed: "now" or "window H1 H2"
    "wdt_ms": 30000,  # trial watchdog; rp2's hardware allows at most 8388
    "confirm_within_ms": 300000,  # a trial that has not confirmed by then rolls back
}


def load(path=CONFIG_FILE):
    cfg = dict(DEFAULTS)
    try:
        with open(path) as f:
            cfg.update(json.load(f))
    except OSError:
        pass  # no file: the defaults
    if not cfg["device_id"]:
        import machine
        from binascii import hexlify

        cfg["device_id"] = hexlify(machine.unique_id()).decode()
    return cfg
