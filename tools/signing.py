"""Host side of release signing: keys, device trust files, manifests, signatures (docs/FORMAT.md).

The device parser (`lib/ota/manifest.py`) and this module implement the same format; tests check
both against the same blobs. Importing this module has no side effects.
"""
import hashlib
import re
import struct

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from mpota import encodings

# P-256 domain parameters (FIPS 186-4 D.1.2.3).
P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
G = (
    0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
    0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5,
)

# Manifest (to-be-signed part), all integers big-endian; see docs/FORMAT.md.
MAGIC = b"MOTA"
FORMAT_VERSION = 2
HEADER = struct.Struct(">4sBBH8sBBBBIIIIIQ32s32sI32sI")
TARGETS = {"firmware": 1, "bundle": 2, "trust": 3}
ENCODINGS = {"raw": 0, "deflate": 1, "delta": 2}
NAME_MAX = 32
CHUNK_MIN = 256
CHUNK_MAX = 65536
CHUNKS_MAX = 65535  # payload chunks + index + pages: the progress record counts in 16 bits
DEFLATE_SLACK = 64  # a deflate chunk may be this much longer than the chunk size
TBS_MAX = HEADER.size + 2 * NAME_MAX
SIG_MIN = 8
SIG_MAX = 72
BOARD_RE = re.compile(rb"[A-Za-z0-9._-]{1,32}\Z")
VERSION_RE = re.compile(rb"[!-~]{1,32}\Z")

# Timestamp record; see docs/FORMAT.md section 5.
STAMP_MAGIC = b"MOTS"
STAMP_HEADER = struct.Struct(">4sBBH8sQQ8sIBBH")
STAMP_LEVELS = ("fleet", "group", "device")
STAMP_LIFE_MAX = 31 * 86400
LEVEL_NAME_MAX = 64

# Device trust file; see docs/FORMAT.md section 8.
TRUST_MAGIC = b"MOTK"
TRUST_VERSION = 2
TRUST_TEETH = 7  # the device reads entries from the file: no RAM cost; see bench/README.md
TRUST_KEYS_MAX = 8
TRUST_PATH = ".ota/trust.bin"  # where the device loads it from
ROLE_RELEASE, ROLE_TRUST, ROLE_TIMESTAMP = 1, 2, 4
ROLES = {"release": ROLE_RELEASE, "trust": ROLE_TRUST, "timestamp": ROLE_TIMESTAMP}


class FormatError(ValueError):
    """A manifest, signature or trust file that does not follow docs/FORMAT.md."""


# --- keys -----------------------------------------------------------------------------------

def generate_key():
    """A new P-256 private key (a `cryptography` object; write it with `private_key_pem`)."""
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(private_key, password):
    """PEM (PKCS#8) bytes, encrypted with `password`; None writes it in the clear."""
    if password:
        enc = serialization.BestAvailableEncryption(_bytes(password))
    else:
        enc = serialization.NoEncryption()
    return private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def load_private_key(path, password=None):
    """The P-256 private key in the PEM file `path` (`password` for an encrypted one)."""
    with open(path, "rb") as f:
        data = f.read()
    key = serialization.load_pem_private_key(data, _bytes(password) if password else None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise FormatError("%s is not a P-256 private key" % path)
    return key


def load_public_key(path):
    """A P-256 public key from a PEM file holding a public key, a certificate or a private key."""
    with open(path, "rb") as f:
        data = f.read()
    if b"PRIVATE KEY" in data:
        raise FormatError("%s holds a private key: pass the public key (mpota keygen writes one)" % path)
    if b"CERTIFICATE" in data:
        from cryptography import x509

        key = x509.load_pem_x509_certificate(data).public_key()
    else:
        key = serialization.load_pem_public_key(data)
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise FormatError("%s is not a P-256 public key" % path)
    return key


def public_key_pem(public_key):
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def point_bytes(public_key):
    """The 65-byte uncompressed SEC1 point 04||x||y."""
    return public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def public_key_id(public_key):
    """8-byte key id: the first 8 bytes of SHA-256 of the uncompressed point."""
    return hashlib.sha256(point_bytes(public_key)).digest()[:8]


def _bytes(s):
    return s.encode() if isinstance(s, str) else s


# --- comb tables for the device verifier ----------------------------------------------------

def _point_add(a, b):
    # Affine P-256 addition on the host (None is the point at infinity).
    if a is None:
        return b
    if b is None:
        return a
    if a[0] == b[0]:
        if (a[1] + b[1]) % P == 0:
            return None
        lam = (3 * a[0] * a[0] - 3) * pow(2 * a[1], -1, P)
    else:
        lam = (b[1] - a[1]) * pow(b[0] - a[0], -1, P)
    x = (lam * lam - a[0] - b[0]) % P
    return x, (lam * (a[0] - x) - a[1]) % P


def _point_mul_pow2(pt, k):
    for _ in range(k):
        pt = _point_add(pt, pt)
    return pt


def comb_table(point, teeth=TRUST_TEETH):
    """Entries 1..2**teeth-1 of the comb table of `point`: entry b = sum of 2**(j*d)*point over
    the bits j of b, with d = ceil(256/teeth); returned as a list of affine (x, y)."""
    d = -(-256 // teeth)
    rows = [point]
    for _ in range(teeth - 1):
        rows.append(_point_mul_pow2(rows[-1], d))
    table = [None]
    for b in range(1, 1 << teeth):
        low = (b & -b).bit_length() - 1
        entry = _point_add(table[b & (b - 1)], rows[low])
        if entry is None:  # impossible for a point of prime order n > 2**255
            raise FormatError("comb table entry at infinity")
        table.append(entry)
    return table[1:]


def _table_bytes(table):
    return b"".join(x.to_bytes(32, "big") + y.to_bytes(32, "big") for x, y in table)


def role_mask(names):
    """The role bit mask for role names (`release`, `trust`, `timestamp`)."""
    mask = 0
    for name in names:
        if name not in ROLES:
            raise FormatError("role must be one of %s" % ", ".join(ROLES))
        mask |= ROLES[name]
    if mask & ROLE_TIMESTAMP and mask != ROLE_TIMESTAMP:
        raise FormatError("a timestamp key can have no other role: it must never authorise code")
    return mask


def trust_file_bytes(public_keys, teeth=TRUST_TEETH, *, serial=0, roles=None):
    """The device trust file for `public_keys` (P-256 public keys), see docs/FORMAT.md section 8.
    `roles`: one bit mask per key (default: release + trust); `serial`: raised by each update."""
    if not 1 <= len(public_keys) <= TRUST_KEYS_MAX:
        raise FormatError("a trust file holds 1 to %d keys" % TRUST_KEYS_MAX)
    if not 2 <= teeth <= 8:
        raise FormatError("comb teeth must be 2..8")
    if not 0 <= serial <= 0xFFFFFFFF:
        raise FormatError("trust serial must be 0..4294967295")
    roles = list(roles) if roles is not None else [ROLE_RELEASE | ROLE_TRUST] * len(public_keys)
    if len(roles) != len(public_keys) or any(not 1 <= r <= 7 or (r & ROLE_TIMESTAMP and r != ROLE_TIMESTAMP) for r in roles):
        raise FormatError("one valid role mask per key")
    if len({public_key_id(k) for k in public_keys}) != len(public_keys):
        raise FormatError("a key is listed twice")
    out = [TRUST_MAGIC, bytes([TRUST_VERSION, teeth, len(public_keys), 0]), struct.pack(">II", serial, 0),
           _table_bytes(comb_table(G, teeth))]
    for pub, role in zip(public_keys, roles):
        nums = pub.public_numbers()
        out += [public_key_id(pub), bytes([role]) + bytes(7), _table_bytes(comb_table((nums.x, nums.y), teeth))]
    body = b"".join(out)
    return body + hashlib.sha256(body).digest()


def parse_trust_file(data):
    """(serial, teeth, [(public key, roles)]) of a version 2 trust file; checks its digest."""
    data = bytes(data)
    if len(data) < 48 or data[:4] != TRUST_MAGIC or data[4] != TRUST_VERSION:
        raise FormatError("not a version %d trust file" % TRUST_VERSION)
    if hashlib.sha256(data[:-32]).digest() != data[-32:]:
        raise FormatError("trust file digest mismatch")
    teeth, count = data[5], data[6]
    serial = struct.unpack_from(">I", data, 8)[0]
    size = ((1 << teeth) - 1) * 64
    pos = 16 + size
    keys = []
    for _ in range(count):
        role = data[pos + 8]
        point = data[pos + 16:pos + 80]
        pub = ec.EllipticCurvePublicNumbers(int.from_bytes(point[:32], "big"), int.from_bytes(point[32:], "big"),
                                            ec.SECP256R1()).public_key()
        keys.append((pub, role))
        pos += 16 + size
    if pos != len(data) - 32:
        raise FormatError("trust file length does not match its key count")
    return serial, teeth, keys


def trust_update(current, *, add=(), remove=()):
    """The next trust file after `current` (bytes of a version 2 trust file): keys `add`ed as
    (public key, roles), key ids (hex) in `remove` dropped, serial raised by one. Refuses a
    result that could lock the devices out (no key left to sign releases or trust updates)."""
    serial, teeth, keys = parse_trust_file(current)
    ids = {public_key_id(pub).hex() for pub, _ in keys}
    for kid in remove:
        if kid not in ids:
            raise FormatError("key %s is not in the trust file" % kid)
    keys = [(pub, role) for pub, role in keys if public_key_id(pub).hex() not in remove]
    for pub, role in add:
        if public_key_id(pub).hex() in ids:
            raise FormatError("key %s is trusted already" % public_key_id(pub).hex())
        keys.append((pub, role))
    if not any(role & ROLE_TRUST for _, role in keys) or not any(role & ROLE_RELEASE for _, role in keys):
        raise FormatError("the new trust file must keep a release key and a trust key, or devices are locked out")
    return trust_file_bytes([pub for pub, _ in keys], teeth, serial=serial + 1, roles=[role for _, role in keys])


def write_trust_file(public_keys, path, teeth=TRUST_TEETH, *, serial=0, roles=None):
    """Write the device trust file for `public_keys` to `path`; returns its size in bytes."""
    data = trust_file_bytes(public_keys, teeth, serial=serial, roles=roles)
    with open(path, "wb") as f:
        f.write(data)
    return len(data)


# --- payload chunks and the digest table ------------------------------------------------------

def payload_chunks(result, chunk_size, encoding="raw", window_bits=encodings.WBITS, base=None):
    """The payload chunk messages for `result` (raw: slices; deflate: each slice compressed on
    its own as a raw deflate stream; delta: each slice as bsdiff records against `base`,
    compressed the same way; docs/FORMAT.md section 4)."""
    if encoding == "raw":
        return [bytes(result[i:i + chunk_size]) for i in range(0, len(result), chunk_size)]
    if encoding == "delta":
        out = encodings.delta_chunks(bytes(base), bytes(result), chunk_size, window_bits)
    else:
        out = encodings.deflate_chunks(bytes(result), chunk_size, window_bits)
    if any(len(c) > chunk_size + DEFLATE_SLACK for c in out):
        raise FormatError("an encoded chunk exceeds chunk size + %d bytes" % DEFLATE_SLACK)
    return out


def table_geometry(chunk_count, chunk_size):
    """(fan-out F, pages P) of the digest table; raises FormatError when it does not fit."""
    fanout = chunk_size // 32
    pages = -(-chunk_count // fanout)
    if pages > fanout or chunk_count + 1 + pages > CHUNKS_MAX:
        raise FormatError("%d chunks are too many for chunk size %d: at most (chunk size / 32)^2 = %d; use larger chunks"
                          % (chunk_count, chunk_size, fanout * fanout))
    return fanout, pages


def digest_table(chunks, chunk_size):
    """(index, pages) of the digest table over the payload chunk messages, docs/FORMAT.md 3."""
    fanout, count = table_geometry(len(chunks), chunk_size)
    leaves = [hashlib.sha256(c).digest() for c in chunks]
    pages = [b"".join(leaves[j * fanout:(j + 1) * fanout]) for j in range(count)]
    return b"".join(hashlib.sha256(p).digest() for p in pages), pages


def message_count(fields):
    """How many chunk topics a release has: payload chunks, the index and the pages."""
    return fields["chunk_count"] + 1 + table_geometry(fields["chunk_count"], fields["chunk_size"])[1]


def chunk_messages(fields, payload, base=None, chunks=None):
    """Every chunk message of a release, in index order: payload chunks, index, pages. Raises
    FormatError when `payload` (the result; for delta with its `base`) is not what the manifest signs.
    `chunks`: the payload chunks the manifest was built with, when they were supplied (build_manifest)."""
    if fields["encoding"] == "delta" and (base is None or len(base) != fields["base_size"]
                                          or hashlib.sha256(base).digest() != fields["base_digest"]):
        raise FormatError("a delta release needs the exact base image its manifest names")
    if chunks is None:
        chunks = payload_chunks(payload, fields["chunk_size"], fields["encoding"], fields["window_bits"], base)
    index, pages = digest_table(chunks, fields["chunk_size"])
    if len(chunks) != fields["chunk_count"] or hashlib.sha256(index).digest() != fields["table_root"]:
        raise FormatError("the payload does not match the manifest's digest table")
    return chunks + [index] + pages


# --- manifest -------------------------------------------------------------------------------

def _key_id(key_id):
    if isinstance(key_id, ec.EllipticCurvePublicKey):
        key_id = public_key_id(key_id)
    elif isinstance(key_id, str):
        key_id = bytes.fromhex(key_id)
    if len(key_id) != 8:
        raise FormatError("key id must be 8 bytes")
    return key_id


def build_manifest(payload, *, board, version, counter, chunk_size, key_id, target="firmware",
                   encoding="raw", expiry=None, window_bits=encodings.WBITS, base=None, chunks=None):
    """The to-be-signed manifest bytes for the result `payload` (bytes). `key_id`: 8 bytes, a hex
    string or the signer's public key. Delta: `base`, the image the device runs (the patch is
    made from it). `chunks`: payload chunk messages encoded elsewhere, committed to as they are
    (their count and lengths are checked, not what they decode to; the device checks that).
    Every bound the device checks is checked here first."""
    key_id = _key_id(key_id)
    board_b, version_b = _bytes(board), _bytes(version)
    if not BOARD_RE.match(board_b):
        raise FormatError("board: 1 to 32 characters of A-Z a-z 0-9 . _ -")
    if not VERSION_RE.match(version_b):
        raise FormatError("version: 1 to 32 printable ASCII characters, no spaces")
    if target not in TARGETS:
        raise FormatError("target must be one of %s" % ", ".join(TARGETS))
    if encoding not in ENCODINGS:
        raise FormatError("encoding must be one of %s" % ", ".join(ENCODINGS))
    if (encoding == "delta") != bool(base):
        raise FormatError("a delta manifest needs its base image, and only a delta has one")
    if encoding != "raw" and not 9 <= window_bits <= 15:
        raise FormatError("deflate window bits must be 9..15")
    if not 0 <= counter <= 0xFFFFFFFF:
        raise FormatError("security counter must be 0..4294967295")
    if not 1 <= len(payload) <= 0xFFFFFFFF:
        raise FormatError("payload must be 1 byte to 4 GiB")
    if not CHUNK_MIN <= chunk_size <= CHUNK_MAX:
        raise FormatError("chunk size must be %d..%d" % (CHUNK_MIN, CHUNK_MAX))
    if expiry is not None and not 1 <= expiry < 1 << 63:
        raise FormatError("expiry must be a positive Unix time")
    if chunks is None:
        chunks = payload_chunks(payload, chunk_size, encoding, window_bits, base)
    elif len(chunks) != -(-len(payload) // chunk_size) or not all(
            1 <= len(c) <= (chunk_size if encoding == "raw" else chunk_size + DEFLATE_SLACK) for c in chunks):
        raise FormatError("supplied chunks: one per %d-byte piece of the payload, each 1..%d bytes"
                          % (chunk_size, chunk_size + (0 if encoding == "raw" else DEFLATE_SLACK)))
    index, _ = digest_table(chunks, chunk_size)
    header = HEADER.pack(
        MAGIC, FORMAT_VERSION, TARGETS[target], HEADER.size + len(board_b) + len(version_b), key_id,
        ENCODINGS[encoding], len(board_b), len(version_b), window_bits if encoding != "raw" else 0, counter,
        len(payload), chunk_size, len(chunks), sum(len(c) for c in chunks), expiry or 0,
        hashlib.sha256(payload).digest(), hashlib.sha256(index).digest(),
        len(base) if base else 0, hashlib.sha256(base).digest() if base else bytes(32), 0,
    )
    return header + board_b + version_b


def parse_tbs(tbs):
    """The fields of a to-be-signed manifest as a dict (checks the format, not a signature)."""
    if len(tbs) < HEADER.size + 2 or len(tbs) > TBS_MAX:
        raise FormatError("manifest length %d out of bounds" % len(tbs))
    (magic, fmt, target, length, kid, encoding, blen, vlen, wbits, counter, size, chunk_size, chunk_count,
     wire_size, expiry, digest, root, base_size, base_digest, reserved) = HEADER.unpack_from(tbs)
    if magic != MAGIC:
        raise FormatError("not a manifest (bad magic)")
    if fmt != FORMAT_VERSION:
        raise FormatError("unsupported format version %d" % fmt)
    if length != len(tbs) or length != HEADER.size + blen + vlen or reserved:
        raise FormatError("inconsistent manifest lengths")
    board = tbs[HEADER.size:HEADER.size + blen]
    version = tbs[HEADER.size + blen:]
    if not BOARD_RE.match(board) or not VERSION_RE.match(version):
        raise FormatError("bad board or version string")
    targets = {v: k for k, v in TARGETS.items()}
    encodings = {v: k for k, v in ENCODINGS.items()}
    if target not in targets or encoding not in encodings:
        raise FormatError("unsupported target %d or encoding %d" % (target, encoding))
    if (encoding != 0) != (wbits != 0) or (wbits and not 9 <= wbits <= 15):
        raise FormatError("bad deflate window bits")
    if (encoding == 2) != (base_size != 0) or (encoding != 2 and any(base_digest)):
        raise FormatError("delta base fields do not match the encoding")
    if not CHUNK_MIN <= chunk_size <= CHUNK_MAX or size < 1 or chunk_count != -(-size // chunk_size) \
            or wire_size < chunk_count or (encoding == 0 and wire_size != size):
        raise FormatError("inconsistent chunk geometry")
    table_geometry(chunk_count, chunk_size)
    return {
        "version": version.decode(), "counter": counter, "board": board.decode(),
        "target": targets[target], "encoding": encodings[encoding], "window_bits": wbits, "size": size,
        "digest": digest, "chunk_size": chunk_size, "chunk_count": chunk_count, "wire_size": wire_size,
        "table_root": root, "base_size": base_size, "base_digest": base_digest if base_size else None,
        "expiry": expiry or None, "key_id": kid.hex(),
    }


# --- timestamp records (freshness) ------------------------------------------------------------

def build_timestamp(*, level, fleet, name=None, release, counter, issued, expires, private_key):
    """A signed timestamp record (docs/FORMAT.md section 5) vouching that `release` (16 hex
    chars) with `counter` is current at `level` of `fleet` (`name`: the group or device)."""
    fleet_b, name_b = _bytes(fleet), _bytes(name or "")
    if level not in STAMP_LEVELS:
        raise FormatError("level must be one of %s" % ", ".join(STAMP_LEVELS))
    if not 1 <= len(fleet_b) <= LEVEL_NAME_MAX or (level == "fleet") != (not name_b) or len(name_b) > LEVEL_NAME_MAX:
        raise FormatError("a fleet name, and a group or device name for those levels")
    if not 0 < issued < expires <= issued + STAMP_LIFE_MAX:
        raise FormatError("a timestamp must expire after it is issued, within %d days" % (STAMP_LIFE_MAX // 86400))
    rtbs = STAMP_HEADER.pack(STAMP_MAGIC, 1, STAMP_LEVELS.index(level), STAMP_HEADER.size + len(fleet_b) + len(name_b),
                             public_key_id(private_key.public_key()), issued, expires, bytes.fromhex(release), counter,
                             len(fleet_b), len(name_b), 0) + fleet_b + name_b
    sig = private_key.sign(rtbs, ec.ECDSA(hashes.SHA256()))
    return rtbs + bytes([len(sig)]) + sig


def split_message(message):
    """(manifest blob, timestamp record or b"") of a manifest topic's message."""
    blob, record, _ = split_variants(message)
    return blob, record


def split_variants(message):
    """(manifest blob, timestamp record or b"", delta variant blobs as bytes) of a manifest
    topic's message (docs/FORMAT.md section 1)."""
    message = bytes(message)
    if len(message) < HEADER.size:
        raise FormatError("message too short for a manifest")
    end = HEADER.unpack_from(message)[3]
    end += 1 + message[end] if end < len(message) else 0
    blob, rest = message[:end], message[end:]
    record = b""
    if rest[:4] == STAMP_MAGIC and len(rest) >= 8:
        rlen = int.from_bytes(rest[6:8], "big")
        rlen += 1 + rest[rlen] if rlen < len(rest) else 0
        record, rest = rest[:rlen], rest[rlen:]
    return blob, record, rest


# --- signatures and blobs -------------------------------------------------------------------

def der_signature(signature):
    """Strict DER for `signature`: DER (as openssl and cloud KMS emit) is checked, 64-byte raw
    r||s (PKCS#11, some KMS) is converted. Raises FormatError for anything else."""
    signature = bytes(signature)
    try:
        r, s = decode_dss_signature(signature)
        der = encode_dss_signature(r, s) == signature
    except ValueError:
        der = False
    if not der:
        if len(signature) != 64:
            raise FormatError("signature is neither strict DER nor 64-byte raw r||s")
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    if not (0 < r < N and 0 < s < N):
        raise FormatError("signature r or s out of range")
    return encode_dss_signature(r, s)


def attach(tbs, signature):
    """The blob the device receives: `tbs`, one length byte, the DER signature."""
    parse_tbs(tbs)
    sig = der_signature(signature)
    return bytes(tbs) + bytes([len(sig)]) + sig


def sign(tbs, private_key):
    """Sign `tbs` with a `cryptography` P-256 private key and return the blob."""
    parse_tbs(tbs)
    return attach(tbs, private_key.sign(bytes(tbs), ec.ECDSA(hashes.SHA256())))


def parse_blob(blob):
    """(tbs, der_signature, fields) of a blob, without checking the signature."""
    blob = bytes(blob)
    if len(blob) < HEADER.size + 3 + SIG_MIN or len(blob) > TBS_MAX + 1 + SIG_MAX:
        raise FormatError("blob length %d out of bounds" % len(blob))
    length = HEADER.unpack_from(blob)[3]
    if length + 1 >= len(blob):
        raise FormatError("blob has no signature")
    tbs, sig = blob[:length], blob[length + 1:]
    if len(sig) != blob[length] or not SIG_MIN <= len(sig) <= SIG_MAX:
        raise FormatError("signature length does not match")
    fields = parse_tbs(tbs)
    fields["id"] = manifest_id(tbs)
    return tbs, sig, fields


def manifest_id(blob_or_tbs):
    """16 hex chars naming a release: the first 8 bytes of SHA-256 of its signed bytes (TBS).
    The signature is left out: ECDSA signatures are malleable, a release's name must not be."""
    data = bytes(blob_or_tbs)
    return hashlib.sha256(data[: HEADER.unpack_from(data)[3]]).digest()[:8].hex()


def message_ids(message):
    """The ids of every manifest in a manifest topic's message: the release's, then its delta
    variants' (docs/FORMAT.md section 1)."""
    blob, _, rest = split_variants(message)
    ids = [manifest_id(blob)]
    while len(rest) >= HEADER.size:
        end = HEADER.unpack_from(rest)[3]
        end += 1 + rest[end] if end < len(rest) else 0
        ids.append(manifest_id(rest[:end]))
        rest = rest[end:]
    return ids


def verify(blob, public_key):
    """The manifest fields (dict) if `blob` is well formed and signed by `public_key`; raises
    FormatError or cryptography's InvalidSignature otherwise."""
    tbs, sig, fields = parse_blob(blob)
    if fields["key_id"] != public_key_id(public_key).hex():
        raise InvalidSignature("blob names key %s, not this key (%s)" % (fields["key_id"], public_key_id(public_key).hex()))
    if der_signature(sig) != sig:
        raise FormatError("signature is not strict DER")
    public_key.verify(sig, tbs, ec.ECDSA(hashes.SHA256()))
    return fields
