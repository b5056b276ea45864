"""The device's OTA settings: `ota_config.json` at the filesystem root, written at provisioning.

Only what differs from the defaults needs to be in the file. Certificates and keys are separate
DER files named here (the form MicroPython's `tls` loads on every port). A broker password, when
a broker uses passwords instead of client certificates, and the Wi-Fi password are the secrets
in this file.

Every setting is checked (`check` raises `FormatError("bad_config", key)`). `load()` never raises:
a board whose settings are damaged must still reach the broker and take the update or the
re-provisioning that repairs them. A file that passes every check is kept as the last good
settings (in the state folder, written only when it changes). A file that does not parse gives
those last good settings; a file with bad settings gives the last good settings with the file's
well-formed ones on top; with no last good copy, the defaults stand in. Each fallback is
reported as a `fault` event with reason `bad_config`."""
import json

CONFIG_FILE = "ota_config.json"
_LAST_GOOD = "config"  # state file: the last settings that passed every check

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

# What each setting must be. A kind ending in "?" also allows null; a tuple is an integer range.
_KINDS = {"device_id": "level?", "board": "board", "fleet": "level", "group": "level?", "root": "level",
          "broker": "broker", "install": "install", "wdt_ms": (1, 86400000), "confirm_within_ms": (1, 604800000),
          "wifi": "dict?"}  # wifi: its fields are the network module's to check
_BROKER = {"host": "name", "port": "port?", "tls": "bool", "ca": "name?", "cert": "name?", "key": "name?",
           "server_hostname": "name?", "user": "secret?", "password": "secret?", "keepalive": (1, 65535)}
_LONGEST = {"level": 64, "board": 32, "name": 253, "secret": 256, "install": 16}


def _ok(kind, v):
    if type(kind) is tuple:
        return type(v) is int and kind[0] <= v <= kind[1]
    if kind[-1] == "?":
        return v is None or _ok(kind[:-1], v)
    if kind == "bool" or kind == "dict":
        return type(v) is (bool if kind == "bool" else dict)
    if kind == "port":
        return _ok((0, 65535), v)
    if kind == "broker":
        return (type(v) is dict and all(_ok(_BROKER[k], v[k]) for k in v if k in _BROKER) and "host" in v
                and (v.get("tls") is False or bool(v.get("ca"))))
    if type(v) is not str or not (kind == "secret" or v) or len(v) > _LONGEST[kind]:
        return False
    if kind == "level":  # a topic level or device id: what docs/PROTOCOL.md allows in one level
        return all(32 < ord(c) < 127 and c not in "/+#" for c in v)
    if kind == "board":
        return all(c in "._-" or "0" <= c <= "9" or "a" <= c.lower() <= "z" for c in v)
    if kind == "install":
        w = v.split()
        return v == "now" or (len(w) == 3 and w[0] == "window" and all(x.isdigit() and int(x) <= 24 for x in w[1:]))
    return True


def check(settings):
    """Raise FormatError("bad_config", key) unless `settings` is a dict whose known keys are
    well-formed. Keys this version does not know are left to whoever uses them."""
    from ota.errors import FormatError

    if type(settings) is not dict:
        raise FormatError("bad_config", "not a JSON object")
    for key, value in settings.items():
        if key in _KINDS and not _ok(_KINDS[key], value):
            raise FormatError("bad_config", key)


def _read(path):
    """The file's object; {} when there is no file; None when it does not parse."""
    try:
        with open(path) as f:
            value = json.load(f)
    except OSError:
        return {}
    except (ValueError, MemoryError):
        return None
    return value if type(value) is dict else None


def load(path=CONFIG_FILE):
    """The settings: defaults, then the file's (see the module note for damaged files)."""
    from ota import store

    given = _read(path)
    last = store.read_json(_LAST_GOOD, {}, _whole)
    cfg = dict(DEFAULTS)
    if given is None:
        store.report(path, "bad_config")
        cfg.update(last)
    elif _whole(given):
        cfg.update(given)
        if given != last:
            store.write_json(_LAST_GOOD, given)
    else:
        cfg.update(last)  # a damaged file: the last good settings, then what it still says well
        for key, value in given.items():
            if key in _KINDS and not _ok(_KINDS[key], value):
                store.report(path + ":" + key, "bad_config")
            else:
                cfg[key] = value
    if not cfg["device_id"]:
        import machine
        from binascii import hexlify

        cfg["device_id"] = hexlify(machine.unique_id()).decode()
    return cfg


def _whole(value):
    from ota.errors import FormatError

    try:
        check(value)
        return True
    except FormatError:
        return False
