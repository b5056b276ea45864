"""The device's OTA settings: `ota_config.json` at the filesystem root, written at provisioning.

Only what differs from the defaults needs to be in the file. Certificates and keys are separate
DER files named here (the form MicroPython's `tls` loads on every port). A broker password, when
a broker uses passwords instead of client certificates, is the one secret in this file.

Every setting is checked (`check` raises `ConfigError` naming the key). `load()` never raises:
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
    "install": "now",  # when a verified update may be installed: "now" or "window H1 H2"
    "wdt_ms": 30000,  # trial watchdog; rp2's hardware allows at most 8388
    "confirm_within_ms": 300000,  # a trial that has not confirmed by then rolls back
}
_checks_cache: list = []


def _checks():
    """{key: test} for every setting this version knows. Built on first use: the host tools
    read DEFAULTS from this file without the device package on their path."""
    if _checks_cache:
        return _checks_cache[0]
    from ota.shape import is_int, is_text

    def level(v):  # a topic level or device id: what docs/PROTOCOL.md allows in one level
        return is_text(v, 64) and all(32 < ord(c) < 127 and c not in "/+#" for c in v)

    def board(v):
        return is_text(v, 32) and all(ord(c) < 127 and (c.isalpha() or c.isdigit() or c in "._-") for c in v)

    def install(v):
        words = v.split() if type(v) is str else ()
        return v == "now" or (len(words) == 3 and words[0] == "window" and words[1].isdigit()
                              and words[2].isdigit() and int(words[1]) <= 24 and int(words[2]) <= 24)

    def optional(test):
        return lambda v: v is None or test(v)

    def name(v):
        return is_text(v, 253)

    def secret(v):
        return is_text(v, 256, 0)

    fields = {"host": name, "port": optional(lambda v: is_int(v, 0, 65535)), "tls": lambda v: type(v) is bool,
              "ca": optional(name), "cert": optional(name), "key": optional(name), "server_hostname": optional(name),
              "user": optional(secret), "password": optional(secret),
              "keepalive": lambda v: is_int(v, 1, 65535)}

    def broker(v):
        if type(v) is not dict or not name(v.get("host")):
            return False
        for key, value in v.items():
            test = fields.get(key)
            if test and not test(value):
                return False
        return v.get("tls") is False or bool(v.get("ca"))

    checks = {
        "device_id": optional(level), "board": board, "fleet": level, "group": optional(level), "root": level,
        "broker": broker, "install": install,
        "wdt_ms": lambda v: is_int(v, 1000, 3600000),
        "confirm_within_ms": lambda v: is_int(v, 1000, 86400000),
        "wifi": lambda v: v is None or type(v) is dict,  # its fields are the network module's to check
    }
    _checks_cache.append(checks)
    return checks


def check(settings):
    """Raise ConfigError (detail: the key) unless `settings` is a dict whose known keys are
    well-formed. Keys this version does not know are left to whoever uses them."""
    from ota.errors import ConfigError

    if type(settings) is not dict:
        raise ConfigError("bad_config", "not a JSON object")
    checks = _checks()
    for key, value in settings.items():
        test = checks.get(key)
        if test and not test(value):
            raise ConfigError("bad_config", key)


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
        checks = _checks()
        for key, value in given.items():
            test = checks.get(key)
            if test and not test(value):
                store.report(path + ":" + key, "bad_config")
            else:
                cfg[key] = value
    if not cfg["device_id"]:
        import machine
        from binascii import hexlify

        cfg["device_id"] = hexlify(machine.unique_id()).decode()
    return cfg


def _whole(value):
    from ota.errors import ConfigError

    try:
        check(value)
        return True
    except ConfigError:
        return False
