"""Check a signed release manifest on the device: signature first, then format, then policy.

The signature covers the exact bytes received; nothing is re-serialised before checking it.
Layout, bounds and reason codes: docs/FORMAT.md (`tools/signing.py` is the host side).
"""
import hashlib
import struct
from binascii import hexlify

from micropython import const

from ota import p256
from ota.errors import FormatError, PolicyError, SignatureError

_HEADER = ">4sBBH8sBBBBIIIIQ32s"
_HEADER_SIZE = const(76)
_NAME_MAX = const(32)
_TBS_MAX = const(140)  # header + board + version at their maximum
_SIG_MIN = const(8)
_SIG_MAX = const(72)
_CHUNK_MIN = const(256)
_CHUNK_MAX = const(65536)
_TARGETS = ("firmware", "bundle")  # target code 1..
_ENCODINGS = ("raw",)  # encoding code 0..


class Manifest:
    """An authentic, acceptable release: see docs/FORMAT.md for each field."""

    def __init__(self, tbs_digest, f, board, version):
        self.id = hexlify(tbs_digest[:8]).decode()
        self.target = _TARGETS[f[2] - 1]
        self.key_id = hexlify(f[4]).decode()
        self.encoding = _ENCODINGS[f[5]]
        self.counter, self.size, self.chunk_size, self.chunk_count = f[9:13]
        self.expiry = f[13] or None
        self.digest = f[14]
        self.board = board
        self.version = version


def _text(b, lo):
    # ASCII string with every byte in [lo, '~'] (board names are narrower, checked by the caller).
    for c in b:
        if c < lo or c > 0x7E:
            raise FormatError("bad_format", "bad character in a name")
    return bytes(b).decode()


def _find_key(keys, kid):
    for k in keys:
        if k.id == kid:
            return k
    raise SignatureError("unknown_key", kid)


def check(blob, keys, board, min_counter, slot_size, now=None, tick=None):
    """The `Manifest` in `blob` if it is signed by one of `keys` and acceptable here.

    `board`: this device's board class; `min_counter`: the stored security counter;
    `slot_size`: bytes available in the target slot; `now`: Unix time or None (no clock: no
    expiry check); `tick`: passed to the verifier to feed a watchdog. Raises OTAError
    subclasses with the reason codes listed in docs/FORMAT.md."""
    n = len(blob)
    if n < _HEADER_SIZE + 3 + _SIG_MIN or n > _TBS_MAX + 1 + _SIG_MAX or bytes(blob[:4]) != b"MOTA":
        raise FormatError("bad_format", "not a manifest")
    if blob[4] != 1:
        raise FormatError("unsupported", "manifest format %d" % blob[4])
    tbs_len = blob[6] << 8 | blob[7]
    if tbs_len < _HEADER_SIZE + 2 or tbs_len > _TBS_MAX or tbs_len + 1 >= n or n != tbs_len + 1 + blob[tbs_len]:
        raise FormatError("bad_format", "bad lengths")
    mv = memoryview(blob)
    key = _find_key(keys, hexlify(mv[8:16]).decode())  # type: ignore[arg-type]  # stub: bytes only; any buffer works
    tbs_digest = hashlib.sha256(mv[:tbs_len]).digest()
    if not p256.verify(tbs_digest, mv[tbs_len + 1:], key, tick):
        raise SignatureError("bad_signature", key.id)

    f = struct.unpack_from(_HEADER, blob)
    blen, vlen = f[6], f[7]
    if f[8] or not 1 <= blen <= _NAME_MAX or not 1 <= vlen <= _NAME_MAX or tbs_len != _HEADER_SIZE + blen + vlen:
        raise FormatError("bad_format", "bad field lengths")
    name = mv[_HEADER_SIZE:_HEADER_SIZE + blen]
    for c in name:
        if not (0x30 <= c <= 0x39 or 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A or c in b"._-"):
            raise FormatError("bad_format", "bad board name")
    name = _text(name, 0x21)
    version = _text(mv[_HEADER_SIZE + blen:tbs_len], 0x21)
    if not 1 <= f[2] <= len(_TARGETS) or f[5] >= len(_ENCODINGS):
        raise FormatError("unsupported", "target %d encoding %d" % (f[2], f[5]))
    size, chunk = f[10], f[11]
    if size < 1 or not _CHUNK_MIN <= chunk <= _CHUNK_MAX or f[12] != (size + chunk - 1) // chunk:
        raise FormatError("bad_geometry", "size %d chunk %d count %d" % (size, chunk, f[12]))

    if name != board:
        raise PolicyError("wrong_board", name)
    if f[9] < min_counter:
        raise PolicyError("downgrade", "counter %d < %d" % (f[9], min_counter))
    if f[13] and now is not None and now >= f[13]:
        raise PolicyError("expired", "expired at %d" % f[13])
    if size > slot_size:
        raise PolicyError("too_large", "%d > %d" % (size, slot_size))
    return Manifest(tbs_digest, f, name, version)
