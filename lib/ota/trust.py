"""The device's trusted signing keys, loaded from the trust file `mpota keygen` writes.

The file carries comb tables for G and for each key, computed on the host, so the device does
no point arithmetic to get ready; the tables stay as bytes (64 per point), the most compact form
in RAM. Layout in docs/FORMAT.md. Loading checks the file's SHA-256, that each key is on the
curve and that each key id matches its key.
"""
import hashlib
from binascii import hexlify

from ota import p256
from ota.errors import FormatError

TRUST_FILE = ".ota/trust.bin"


class Key:
    """One trusted key: `id` (16 hex chars), comb tables `g` and `q` (memoryviews), `teeth`."""

    def __init__(self, kid, g, q, teeth):
        self.id = kid
        self.g = g
        self.q = q
        self.teeth = teeth


def _read(f, h, buf):
    if f.readinto(buf) != len(buf):
        raise FormatError("bad_format", "trust file truncated")
    h.update(buf)
    return memoryview(buf)


def load(path=TRUST_FILE):
    """The list of trusted `Key`s in the trust file at `path`; raises FormatError if it is bad."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        head = _read(f, h, bytearray(8))
        teeth, count = head[5], head[6]
        if head[:4] != b"MOTK" or head[4] != 1 or head[7] or not 2 <= teeth <= 8 or not 1 <= count <= 8:
            raise FormatError("bad_format", "not a version 1 trust file")
        size = ((1 << teeth) - 1) * 64
        g = _read(f, h, bytearray(size))
        keys = []
        for _ in range(count):
            kid = _read(f, h, bytearray(8))
            q = _read(f, h, bytearray(size))
            if not p256.on_curve(int.from_bytes(q[:32], "big"), int.from_bytes(q[32:64], "big")):
                raise FormatError("bad_format", "trusted key is not on the curve")
            kh = hashlib.sha256(b"\x04")
            kh.update(q[:64])
            if kh.digest()[:8] != kid:
                raise FormatError("bad_format", "key id does not match its key")
            keys.append(Key(hexlify(kid).decode(), g, q, teeth))
        if f.read(33) != h.digest():
            raise FormatError("bad_format", "trust file digest mismatch")
    return keys
