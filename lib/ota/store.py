"""Small state files that survive a power cut whole: each is either the old or the new version.

A file is written beside its final name and renamed over it; littlefs (the ESP32 and rp2 default)
renames atomically. A CRC-32 trailer catches a torn file on filesystems that do not."""
import json
import os
import struct
from binascii import crc32

STATE_DIR = ".ota"  # not an identifier: it can never shadow the `ota` package on sys.path
MANIFEST = "manifest"  # the signed manifest of the download in progress
PENDING = "pending"  # the install in flight: written just before set_boot()
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


def write_json(name, value):
    write(name, json.dumps(value).encode())


def read_json(name, default=None):
    """The file's JSON value, or `default` when it is missing or torn."""
    data = read(name)
    return json.loads(data) if data else default
