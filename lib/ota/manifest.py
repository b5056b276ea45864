"""Check a signed release manifest (format v2) on the device: signature first, then format,
then policy.

The signature covers the exact bytes received; nothing is re-serialised before checking it.
Layout, bounds and reason codes: docs/FORMAT.md (`tools/signing.py` is the host side).
"""
import hashlib
import struct
from binascii import hexlify

from micropython import const

from ota import p256
from ota.errors import FormatError, PolicyError, SignatureError
from ota.trust import RELEASE, TRUST

_HEADER = ">4sBBH8sBBBBIIIIIQ32s32sI32sI"
_HEADER_SIZE = const(152)
_NAME_MAX = const(32)
_TBS_MAX = const(216)  # header + board + version at their maximum
_SIG_MIN = const(8)
_SIG_MAX = const(72)
BLOB_MAX = const(289)  # _TBS_MAX + 1 + _SIG_MAX
_CHUNK_MIN = const(256)
_CHUNK_MAX = const(65536)
_CHUNKS_MAX = const(65535)  # payload chunks + index + pages: the progress record counts in 16 bits
_TARGETS = ("firmware", "bundle", "trust")  # target code 1..
_ROLES = (RELEASE, RELEASE, TRUST)  # the key role each target needs
_ENCODINGS = ("raw", "deflate", "delta")  # encoding code 0..


class Manifest:
    """An authentic, acceptable release: see docs/FORMAT.md section 2 for each field."""

    def __init__(self, tbs_digest, f, board, version):
        self.id = hexlify(tbs_digest[:8]).decode()  # names this manifest's chunks on the wire
        self.release = self.id  # the release it delivers: a delta variant's is its full manifest's id
        self.target = _TARGETS[f[2] - 1]
        self.key_id = hexlify(f[4]).decode()
        self.encoding = _ENCODINGS[f[5]]
        self.window_bits = f[8]
        self.counter, self.size, self.chunk_size, self.chunk_count, self.wire_size = f[9:14]
        self.expiry = f[14] or None
        self.digest = f[15]
        self.table_root = f[16]
        self.base_size = f[17]
        self.base_digest = f[18] if f[17] else None
        self.fanout = self.chunk_size // 32  # digests per page of the digest table
        self.pages = (self.chunk_count + self.fanout - 1) // self.fanout
        self.board = board
        self.version = version


def blob_length(message):
    """Where the manifest blob in a manifest topic's message ends (its own length fields say)."""
    if len(message) < 8 or bytes(message[:4]) != b"MOTA":
        raise FormatError("bad_format", "not a manifest")
    tbs_len = message[6] << 8 | message[7]
    if tbs_len >= len(message):
        raise FormatError("bad_format", "bad lengths")
    return tbs_len + 1 + message[tbs_len]


def _text(b, lo):
    # ASCII string with every byte in [lo, '~'] (board names are narrower, checked by the caller).
    for c in b:
        if c < lo or c > 0x7E:
            raise FormatError("bad_format", "bad character in a name")
    return bytes(b).decode()


def find_key(keys, kid, role):
    """The trusted key `kid` (16 hex chars) if it has `role`, else SignatureError unknown_key."""
    for k in keys:
        if k.id == kid and k.roles & role:
            return k
    raise SignatureError("unknown_key", kid)


def check(blob, keys, board, min_counter, slot_size, now=None, tick=None):
    """The `Manifest` in `blob` if it is signed by one of `keys` and acceptable here.

    `board`: this device's board class; `min_counter`: the counter floor of the manifest's
    target kind; `slot_size`: bytes available in the target; `now`: Unix time or None (no
    clock: a manifest with an expiry is refused); `tick`: passed to the verifier to feed a
    watchdog. Raises OTAError subclasses with the reason codes of docs/FORMAT.md section 9."""
    n = len(blob)
    if n < _HEADER_SIZE + 3 + _SIG_MIN or n > BLOB_MAX or bytes(blob[:4]) != b"MOTA":
        raise FormatError("bad_format", "not a manifest")
    if blob[4] != 2:
        raise FormatError("unsupported", "manifest format %d" % blob[4])
    tbs_len = blob[6] << 8 | blob[7]
    if tbs_len < _HEADER_SIZE + 2 or tbs_len > _TBS_MAX or tbs_len + 1 >= n or n != tbs_len + 1 + blob[tbs_len]:
        raise FormatError("bad_format", "bad lengths")
    if not 1 <= blob[5] <= len(_TARGETS):
        raise FormatError("unsupported", "target %d" % blob[5])
    mv = memoryview(blob)
    key = find_key(keys, hexlify(mv[8:16]).decode(), _ROLES[blob[5] - 1])  # type: ignore[arg-type]  # stub: bytes only; any buffer works
    tbs_digest = hashlib.sha256(mv[:tbs_len]).digest()
    if not p256.verify(tbs_digest, mv[tbs_len + 1:], key, tick):
        raise SignatureError("bad_signature", key.id)

    f = struct.unpack_from(_HEADER, blob)
    blen, vlen = f[6], f[7]
    if f[19] or not 1 <= blen <= _NAME_MAX or not 1 <= vlen <= _NAME_MAX or tbs_len != _HEADER_SIZE + blen + vlen:
        raise FormatError("bad_format", "bad field lengths")
    name = mv[_HEADER_SIZE:_HEADER_SIZE + blen]
    for c in name:
        if not (0x30 <= c <= 0x39 or 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A or c in b"._-"):
            raise FormatError("bad_format", "bad board name")
    name = _text(name, 0x21)
    version = _text(mv[_HEADER_SIZE + blen:tbs_len], 0x21)
    encoding, wbits = f[5], f[8]
    if encoding >= len(_ENCODINGS) or (encoding != 0) != (wbits != 0) or wbits and not 9 <= wbits <= 15:
        raise FormatError("unsupported", "encoding %d window %d" % (encoding, wbits))
    _geometry(f, encoding)

    if name != board:
        raise PolicyError("wrong_board", name)
    if f[9] < min_counter:
        raise PolicyError("downgrade", "counter %d < %d" % (f[9], min_counter))
    if f[14]:
        if now is None:
            raise PolicyError("no_clock", "the release expires and this device has no time")
        if now >= f[14]:
            raise PolicyError("expired", "expired at %d" % f[14])
    if f[10] > slot_size:
        raise PolicyError("too_large", "%d > %d" % (f[10], slot_size))
    return Manifest(tbs_digest, f, name, version)


def _geometry(f, encoding):
    size, chunk, count, wire, base_size = f[10], f[11], f[12], f[13], f[17]
    fanout = chunk // 32
    pages = (count + fanout - 1) // fanout if fanout else 0  # a chunk under 32 bytes is refused below
    if (size < 1 or count < 1 or not _CHUNK_MIN <= chunk <= _CHUNK_MAX or count != (size + chunk - 1) // chunk
            or wire < count or (encoding == 0 and wire != size) or pages > fanout or count + 1 + pages > _CHUNKS_MAX
            or (encoding == 2) != (base_size != 0) or (encoding != 2 and f[18] != bytes(32))):
        raise FormatError("bad_geometry", "size %d chunk %d count %d wire %d" % (size, chunk, count, wire))
