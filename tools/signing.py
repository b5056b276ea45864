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

# P-256 domain parameters (FIPS 186-4 D.1.2.3).
P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
G = (
    0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
    0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5,
)

# Manifest (to-be-signed part), all integers big-endian; see docs/FORMAT.md.
MAGIC = b"MOTA"
FORMAT_VERSION = 1
HEADER = struct.Struct(">4sBBH8sBBBBIIIIQ32s")
TARGETS = {"firmware": 1, "bundle": 2}
ENCODINGS = {"raw": 0}
NAME_MAX = 32
CHUNK_MIN = 256
CHUNK_MAX = 65536
TBS_MAX = HEADER.size + 2 * NAME_MAX
SIG_MIN = 8
SIG_MAX = 72
BOARD_RE = re.compile(rb"[A-Za-z0-9._-]{1,32}\Z")
VERSION_RE = re.compile(rb"[!-~]{1,32}\Z")

# Device trust file; see docs/FORMAT.md.
TRUST_MAGIC = b"MOTK"
TRUST_VERSION = 1
TRUST_TEETH = 7  # 16 KB of tables per key in RAM; see bench/README.md
TRUST_KEYS_MAX = 8
TRUST_PATH = ".ota/trust.bin"  # where the device loads it from


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


def trust_file_bytes(public_keys, teeth=TRUST_TEETH):
    """The device trust file for `public_keys` (a list of P-256 public keys), see docs/FORMAT.md."""
    if not 1 <= len(public_keys) <= TRUST_KEYS_MAX:
        raise FormatError("a trust file holds 1 to %d keys" % TRUST_KEYS_MAX)
    if not 2 <= teeth <= 8:
        raise FormatError("comb teeth must be 2..8")
    out = [TRUST_MAGIC, bytes([TRUST_VERSION, teeth, len(public_keys), 0]), _table_bytes(comb_table(G, teeth))]
    for pub in public_keys:
        nums = pub.public_numbers()
        out += [public_key_id(pub), _table_bytes(comb_table((nums.x, nums.y), teeth))]
    body = b"".join(out)
    return body + hashlib.sha256(body).digest()


def write_trust_file(public_keys, path, teeth=TRUST_TEETH):
    """Write the device trust file for `public_keys` to `path`; returns its size in bytes."""
    data = trust_file_bytes(public_keys, teeth)
    with open(path, "wb") as f:
        f.write(data)
    return len(data)


# --- manifest -------------------------------------------------------------------------------

def build_manifest(payload, *, board, version, counter, chunk_size, key_id, target="firmware",
                   encoding="raw", expiry=None):
    """The to-be-signed manifest bytes for `payload` (bytes). `key_id`: 8 bytes, a hex string or
    the signer's public key. Every bound the device checks is checked here first."""
    if isinstance(key_id, ec.EllipticCurvePublicKey):
        key_id = public_key_id(key_id)
    elif isinstance(key_id, str):
        key_id = bytes.fromhex(key_id)
    board_b, version_b = _bytes(board), _bytes(version)
    if len(key_id) != 8:
        raise FormatError("key id must be 8 bytes")
    if not BOARD_RE.match(board_b):
        raise FormatError("board: 1 to 32 characters of A-Z a-z 0-9 . _ -")
    if not VERSION_RE.match(version_b):
        raise FormatError("version: 1 to 32 printable ASCII characters, no spaces")
    if target not in TARGETS:
        raise FormatError("target must be one of %s" % ", ".join(TARGETS))
    if encoding not in ENCODINGS:
        raise FormatError("encoding must be one of %s" % ", ".join(ENCODINGS))
    if not 0 <= counter <= 0xFFFFFFFF:
        raise FormatError("security counter must be 0..4294967295")
    if not 1 <= len(payload) <= 0xFFFFFFFF:
        raise FormatError("payload must be 1 byte to 4 GiB")
    if not CHUNK_MIN <= chunk_size <= CHUNK_MAX:
        raise FormatError("chunk size must be %d..%d" % (CHUNK_MIN, CHUNK_MAX))
    if expiry is not None and not 1 <= expiry < 1 << 63:
        raise FormatError("expiry must be a positive Unix time")
    header = HEADER.pack(
        MAGIC, FORMAT_VERSION, TARGETS[target], HEADER.size + len(board_b) + len(version_b), key_id,
        ENCODINGS[encoding], len(board_b), len(version_b), 0, counter, len(payload), chunk_size,
        -(-len(payload) // chunk_size), expiry or 0, hashlib.sha256(payload).digest(),
    )
    return header + board_b + version_b


def parse_tbs(tbs):
    """The fields of a to-be-signed manifest as a dict (checks the format, not a signature)."""
    if len(tbs) < HEADER.size + 2 or len(tbs) > TBS_MAX:
        raise FormatError("manifest length %d out of bounds" % len(tbs))
    (magic, fmt, target, length, kid, encoding, blen, vlen, reserved, counter, size, chunk_size,
     chunk_count, expiry, digest) = HEADER.unpack_from(tbs)
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
    if not CHUNK_MIN <= chunk_size <= CHUNK_MAX or size < 1 or chunk_count != -(-size // chunk_size):
        raise FormatError("inconsistent chunk geometry")
    return {
        "version": version.decode(), "counter": counter, "board": board.decode(),
        "target": targets[target], "encoding": encodings[encoding], "size": size, "digest": digest,
        "chunk_size": chunk_size, "chunk_count": chunk_count, "expiry": expiry or None,
        "key_id": kid.hex(),
    }


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
