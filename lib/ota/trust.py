"""The device's trusted keys, loaded from the trust file `mpota keygen` writes.

The file carries comb tables for G and for each key, computed on the host, so the device does no
point arithmetic to get ready. Loading checks the file's SHA-256, that each key is on the curve,
that each key id matches its key and that the roles are valid, then keeps only where each table
starts: a signature check reads the entries it needs from the file (`ota.p256`), so the tables
never sit in RAM. Layout in docs/FORMAT.md section 8.
"""
import hashlib
from binascii import hexlify

from micropython import const

from ota import p256
from ota.errors import FormatError

TRUST_FILE = ".ota/trust.bin"
RELEASE = const(1)  # role bits: may sign firmware and bundles,
TRUST = const(2)  # trust updates,
TIMESTAMP = const(4)  # timestamp records only
_BLOCK = const(512)


class Key:
    """One trusted key: `id` (16 hex chars), `roles`, `teeth`, and where its tables are in `path`."""

    def __init__(self, kid, roles, path, g, q, teeth):
        self.id = kid
        self.roles = roles
        self.path = path
        self.g = g  # byte offset of G's table in the file
        self.q = q  # byte offset of this key's table
        self.teeth = teeth

    def open(self):
        """The trust file, for reading table entries during one signature check."""
        return open(self.path, "rb")


class Trust:
    """The loaded trust file: its `keys` and its `serial` (raised by every trust update)."""

    def __init__(self, keys, serial):
        self.keys = keys
        self.serial = serial

    def has_timestamp_keys(self):
        """True when freshness is on: some key may sign timestamp records."""
        return any(k.roles & TIMESTAMP for k in self.keys)


def _read(f, h, buf):
    if f.readinto(buf) != len(buf):
        raise FormatError("bad_format", "trust file truncated")
    h.update(buf)
    return buf


def _skip(f, h, n, buf):
    # Hash n bytes of the file through a small buffer.
    view = memoryview(buf)
    while n:
        k = min(n, len(buf))
        _read(f, h, view[:k])
        n -= k


def read(path=TRUST_FILE):
    """The `Trust` in the file at `path`; raises FormatError if anything in it is wrong."""
    h = hashlib.sha256()
    buf = bytearray(_BLOCK)
    with open(path, "rb") as f:
        head = _read(f, h, bytearray(8))
        teeth, count, version = head[5], head[6], head[4]
        if head[:4] != b"MOTK" or version not in (1, 2) or head[7] or not 2 <= teeth <= 8 or not 1 <= count <= 8:
            raise FormatError("bad_format", "not a trust file")
        serial = 0
        pos = 8
        if version == 2:
            more = _read(f, h, bytearray(8))
            serial = int.from_bytes(more[:4], "big")
            if more[4:] != b"\0\0\0\0":
                raise FormatError("bad_format", "trust file reserved bytes")
            pos = 16
        size = ((1 << teeth) - 1) * 64
        g = pos
        _skip(f, h, size, buf)
        pos += size
        keys = []
        entry = bytearray(16 if version == 2 else 8)
        for _ in range(count):
            _read(f, h, entry)
            pos += len(entry)
            roles = RELEASE | TRUST
            if version == 2:
                roles = entry[8]
                if not roles or roles > 7 or (roles & TIMESTAMP and roles != TIMESTAMP) or any(entry[9:16]):
                    raise FormatError("bad_format", "key roles")
            point = _read(f, h, bytearray(64))
            if not p256.on_curve(int.from_bytes(point[:32], "big"), int.from_bytes(point[32:], "big")):
                raise FormatError("bad_format", "trusted key is not on the curve")
            kh = hashlib.sha256(b"\x04")
            kh.update(point)
            if kh.digest()[:8] != entry[:8]:
                raise FormatError("bad_format", "key id does not match its key")
            keys.append(Key(hexlify(bytes(entry[:8])).decode(), roles, path, g, pos, teeth))
            _skip(f, h, size - 64, buf)
            pos += size
        if f.read(33) != h.digest():
            raise FormatError("bad_format", "trust file digest mismatch")
    return Trust(keys, serial)


def load(path=TRUST_FILE):
    """The list of trusted `Key`s in the trust file at `path`; raises FormatError if it is bad."""
    return read(path).keys
