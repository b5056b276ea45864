"""Small state files that survive a power cut whole: each is either the old or the new version.

A file is written beside its final name and renamed over it; littlefs (the ESP32 and rp2 default)
renames atomically. A CRC-32 trailer catches a torn file on filesystems that do not. Content that
passes the CRC is still checked before use: a file that fails is reported (a `fault` event with
its reason code), dropped, and read as missing, so one bad file never wedges the updater."""
import json
import os
import struct
from binascii import crc32

from ota import events

STATE_DIR = ".ota"  # not an identifier: it can never shadow the `ota` package on sys.path
MANIFEST = "manifest"  # the signed manifest of the download in progress
PENDING = "pending"  # the install in flight: written just before set_boot()
PROGRESS = "progress"  # the download's progress record (ota.progress)
BUNDLE = "bundle"  # the app-bundle record (ota.bundle_boot.RECORD): only on a board with bundles


def path(name):
    return STATE_DIR + "/" + name


def _ensure_dir():
    try:
        os.mkdir(STATE_DIR)
    except OSError:
        pass  # already there


def write(name, data):
    _ensure_dir()
    final = path(name)
    tmp = final + ".new"
    with open(tmp, "wb") as f:
        f.write(data)
        f.write(struct.pack("<I", crc32(data)))
    os.rename(tmp, final)


def present(name):
    """True when a file of that name exists, whole or not."""
    try:
        os.stat(path(name))
        return True
    except OSError:
        return False


def read(name):
    """The file's content, or None when it is missing or torn."""
    try:
        with open(path(name), "rb") as f:
            blob = f.read()
    except OSError:
        return None
    if len(blob) < 4:
        return None
    data = blob[:-4]
    if struct.unpack("<I", blob[-4:])[0] != crc32(data):
        return None
    return data


def exists(name):
    try:
        os.stat(path(name))
        return True
    except OSError:
        return False


def remove(name):
    try:
        os.remove(path(name))
    except OSError:
        pass  # already gone


def report(name, reason):
    """Tell the status reports that a state file could not be used."""
    events.emit("fault", error=reason, file=name)


def drop(name, reason):
    """Report a state file that cannot be used and remove it: the caller starts afresh."""
    report(name, reason)
    remove(name)


def write_json(name, value):
    write(name, json.dumps(value).encode())


def decode_json(data, valid):
    """The JSON value in `data` when it parses and `valid(value)` says yes, else None."""
    try:
        value = json.loads(data)
    except (ValueError, TypeError):  # not MemoryError: running short must not drop a good file
        return None
    return value if valid(value) else None


def read_json(name, default=None, valid=None):
    """The file's JSON value, or `default` when it is missing. A torn file, or one whose
    content `valid` (default: the check for `name`, if it has one) refuses, is dropped."""
    if not present(name):
        return default
    data = read(name)
    valid = valid or (_pending_ok if name == PENDING else _any)
    value = decode_json(data, valid) if data is not None else None
    if value is None:
        drop(name, "bad_state" if data is not None else "torn")
        return default
    return value


# --- content checks ---------------------------------------------------------------------------

def _any(value):
    return value is not None


def is_int(value, low, high):
    return type(value) is int and low <= value <= high  # bool is not int here


def is_text(value, longest, shortest=1):
    return type(value) is str and shortest <= len(value) <= longest


def is_release(value):
    """A release id as state files keep it: 16 lowercase hex characters."""
    return type(value) is str and len(value) == 16 and all(c in "0123456789abcdef" for c in value)


def _pending_ok(p):
    return (type(p) is dict and is_release(p.get("release")) and is_text(p.get("version"), 64)
            and is_int(p.get("counter"), 0, 0xFFFFFFFF) and (p.get("from") is None or is_text(p["from"], 64, 0))
            and is_int(p.get("slot"), 0, 15) and is_int(p.get("seq"), 0, 0xFFFFFFFF)
            and (p.get("reason") is None or is_text(p["reason"], 32)))

