"""The device's trusted signing keys, loaded from the trust file `mpota keygen` writes.

The file carries comb tables for G and for each key, computed on the host, so the device does
no point arithmetic to get ready; its layout is in docs/FORMAT.md. Loading checks the file's
SHA-256, that each key is on the curve and that each key id matches its key.
"""
import hashlib
from binascii import hexlify

from ota import p256
from ota.errors import FormatError

TRUST_FILE = "ota/trust.bin"


class Key:
    """One trusted key: `id` (16 hex chars), comb tables `g` and `q` (flat x, y ints), `teeth`."""

    def __init__(self, kid, g, q, teeth):
        self.id = kid
        self.g = g
        self.q = q
        self.teeth = teeth


def _read(f, h, buf):
    if f.readinto(buf) != len(buf):
        raise FormatError("bad_format", "trust file truncated")
    h.update(buf)


def _table(f, h, buf, entries):
    # Read `entries` affine points into a flat list sized exactly (no over-allocation).
    mv = memoryview(buf)
    t = [0] * (2 * entries)
    for i in range(0, 2 * entries, 2):
        _read(f, h, buf)
        t[i] = int.from_bytes(mv[:32], "big")
        t[i + 1] = int.from_bytes(mv[32:], "big")
    return t


def load(path=TRUST_FILE):
    """The list of trusted `Key`s in the trust file at `path`; raises FormatError if it is bad."""
    h = hashlib.sha256()
    head = bytearray(8)
    point = bytearray(64)
    with open(path, "rb") as f:
        _read(f, h, head)
        teeth, count = head[5], head[6]
        if head[:4] != b"MOTK" or head[4] != 1 or head[7] or not 2 <= teeth <= 8 or not 1 <= count <= 8:
            raise FormatError("bad_format", "not a version 1 trust file")
        entries = (1 << teeth) - 1
        g = _table(f, h, point, entries)
        keys = []
        kid = bytearray(8)
        for _ in range(count):
            _read(f, h, kid)
            q = _table(f, h, point, entries)
            if not p256.on_curve(q[0], q[1]):
                raise FormatError("bad_format", "trusted key is not on the curve")
            point[:32] = q[0].to_bytes(32, "big")
            point[32:] = q[1].to_bytes(32, "big")
            kh = hashlib.sha256(b"\x04")
            kh.update(point)
            if kh.digest()[:8] != kid:
                raise FormatError("bad_format", "key id does not match its key")
            keys.append(Key(hexlify(kid).decode(), g, q, teeth))
        if f.read(33) != h.digest():
            raise FormatError("bad_format", "trust file digest mismatch")
    return keys
