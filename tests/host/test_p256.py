"""The device's P-256 verifier under the real MicroPython unix port: NIST CAVP vectors, signatures
from `cryptography` and the openssl CLI, and a hand-written adversarial set. All cases of a test
run in one micropython process."""
import hashlib
import os
import subprocess

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

import mpunix
from vectors import cavp_cases
from mpota import signing

N = signing.N
P = signing.P

BATCH = """
import sys
from binascii import unhexlify
from ota import p256, trust
from ota.errors import FormatError
ticks = [0]
def tick():
    ticks[0] += 1
out = []
for line in open(sys.argv[1]):
    path, digest, sig = line.split()
    try:
        key = trust.load(path)[0]
    except FormatError:
        out.append("E")
        continue
    out.append("T" if p256.verify(unhexlify(digest), unhexlify(sig), key, tick) else "F")
print("".join(out), ticks[0])
"""


class Batch:
    """Cases (trust file, digest, signature) checked in one micropython run."""

    def __init__(self, tmp_path):
        self.dir = tmp_path
        self.cases = []
        self.trust = {}

    def trust_file(self, public_key=None, raw=None):
        """Path of a trust file for `public_key`, or the file bytes `raw` as given."""
        data = raw if raw is not None else signing.trust_file_bytes([public_key])
        name = hashlib.sha256(data).hexdigest()[:16]
        if name not in self.trust:
            path = self.dir / (name + ".bin")
            path.write_bytes(data)
            self.trust[name] = str(path)
        return self.trust[name]

    def add(self, trust_path, digest, sig):
        self.cases.append((trust_path, bytes(digest).hex(), bytes(sig).hex() or "00"))

    def run(self):
        listing = self.dir / "cases.txt"
        listing.write_text("".join("%s %s %s\n" % c for c in self.cases))
        out = mpunix.run(BATCH, args=[str(listing)]).stdout.split()
        return out[0], int(out[1])


def public_key(x, y):
    return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()


def test_nist_cavp_sigver_and_siggen(tmp_path):
    cases = cavp_cases("SigVer.rsp") + cavp_cases("SigGen.txt")
    assert len(cases) == 30 and sum(c[5] for c in cases) == 18
    batch = Batch(tmp_path)
    expected = ""
    for qx, qy, digest, r, s, valid in cases:
        batch.add(batch.trust_file(public_key(qx, qy)), digest, encode_dss_signature(r, s))
        expected += "T" if valid else "F"
    got, _ = batch.run()
    assert got == expected


def test_cryptography_signatures_verify_and_tampering_is_refused(tmp_path):
    """Random keys, and keys 1, 2, n-1 (Q = G, 2G, -G) that reach the doubling and infinity
    branches of the point addition."""
    batch = Batch(tmp_path)
    expected = ""
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(4)]
    keys += [ec.derive_private_key(d, ec.SECP256R1()) for d in (1, 2, 3, N - 1, N - 2)]
    other = batch.trust_file(ec.generate_private_key(ec.SECP256R1()).public_key())
    for key in keys:
        path = batch.trust_file(key.public_key())
        for i in range(6):
            digest = os.urandom(32) if i else (1).to_bytes(32, "big")
            sig = key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
            batch.add(path, digest, sig)
            batch.add(other, digest, sig)  # wrong key
            flipped = bytearray(digest)
            flipped[i] ^= 0x10
            batch.add(path, flipped, sig)
            expected += "TFF"
    got, ticks = batch.run()
    assert got == expected
    assert ticks >= len(expected) * 4  # the watchdog callback runs several times per verify


def test_openssl_cli_signatures_verify(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    pem = tmp_path / "key.pem"
    pem.write_bytes(signing.private_key_pem(key, None))
    batch = Batch(tmp_path)
    path = batch.trust_file(key.public_key())
    for i in range(5):
        msg = tmp_path / ("m%d" % i)
        msg.write_bytes(os.urandom(100 + i))
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(pem), str(msg)], capture_output=True, check=True).stdout
        batch.add(path, hashlib.sha256(msg.read_bytes()).digest(), sig)
    assert batch.run()[0] == "TTTTT"


def der_int(v, pad=b""):
    body = pad + v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big")
    return b"\x02" + bytes([len(body)]) + body


def adversarial(r, s):
    """(name, signature) pairs that a strict verifier must refuse."""
    ri, si = der_int(r), der_int(s)
    good = b"\x30" + bytes([len(ri + si)]) + ri + si
    seq = lambda body: b"\x30" + bytes([len(body)]) + body  # noqa: E731
    cases = [
        ("long-form sequence length", b"\x30\x81" + bytes([len(ri + si)]) + ri + si),
        ("sequence length too long", b"\x30" + bytes([len(ri + si) + 1]) + ri + si),
        ("sequence length too short", b"\x30" + bytes([len(ri + si) - 1]) + ri + si),
        ("trailing data", good + b"\x00"),
        ("indefinite length", b"\x30\x80" + ri + si + b"\x00\x00"),
        ("wrong outer tag", b"\x31" + good[1:]),
        ("wrong integer tag", seq(b"\x03" + ri[1:] + si)),
        ("long-form integer length", seq(b"\x02\x81" + ri[1:] + si)),
        ("padded r", seq(der_int(r, b"\x00") + si)),
        ("padded s", seq(ri + der_int(s, b"\x00"))),
        ("negative r", seq(b"\x02\x01\x81" + si)),
        ("r missing the sign byte", seq(b"\x02\x20" + (r | 1 << 255).to_bytes(32, "big") + si)),
        ("empty r", seq(b"\x02\x00" + si)),
        ("missing s", seq(ri)),
        ("three integers", seq(ri + si + si)),
        ("raw r||s", r.to_bytes(32, "big") + s.to_bytes(32, "big")),
        ("empty", b""),
        ("r = 0", seq(der_int(0) + si)),
        ("s = 0", seq(ri + der_int(0))),
        ("r = n", seq(der_int(N) + si)),
        ("s = n", seq(ri + der_int(N))),
        ("r = n + r", seq(der_int(N + r) + si)),
        ("s = n + s", seq(ri + der_int(N + s))),
        ("r = p", seq(der_int(P) + si)),
        ("r = 2**256 - 1", seq(der_int(2**256 - 1) + si)),
    ]
    for bit in (0, 7, 20, 100, 300, 8 * len(good) - 1):
        flipped = bytearray(good)
        flipped[bit // 8] ^= 1 << (bit % 8)
        cases.append(("bit %d flipped" % bit, bytes(flipped)))
    return good, cases


def test_adversarial_signatures_and_keys_are_refused(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    digest = os.urandom(32)
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    r, s = decode_dss_signature(key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256()))))
    good, cases = adversarial(r, s)
    batch = Batch(tmp_path)
    path = batch.trust_file(key.public_key())
    batch.add(path, digest, good)
    for _, sig in cases:
        batch.add(path, digest, sig)
    # Trust files the loader must refuse: key off the curve, key "at infinity" (0, 0), a table
    # byte changed, truncated, a key id that does not match its key, bad roles or reserved bytes.
    good_file = signing.trust_file_bytes([key.public_key()])
    q = 16 + 127 * 64 + 16  # the key's table: after the header, G's table and the key's entry
    bad_files = []
    for x, y in ((key.public_key().public_numbers().x, 5), (0, 0)):
        f = bytearray(good_file)
        f[q:q + 64] = x.to_bytes(32, "big") + y.to_bytes(32, "big")
        point = b"\x04" + bytes(f[q:q + 64])
        f[q - 16:q - 8] = hashlib.sha256(point).digest()[:8]
        f[-32:] = hashlib.sha256(bytes(f[:-32])).digest()
        bad_files.append(bytes(f))
    changed = bytearray(good_file)
    changed[q + 200] ^= 1
    def edited(pos, value):
        f = bytearray(good_file)
        f[pos] = value
        f[-32:] = hashlib.sha256(bytes(f[:-32])).digest()
        return bytes(f)

    bad_files += [bytes(changed), good_file[:-1], good_file + b"\x00", edited(q - 9, good_file[q - 9] ^ 1),
                  edited(q - 8, 0), edited(q - 8, 8), edited(q - 8, 5), edited(q - 1, 1), edited(12, 1)]
    for raw in bad_files:
        batch.add(batch.trust_file(raw=raw), digest, good)
    got, _ = batch.run()
    names = ["good"] + [n for n, _ in cases] + ["bad trust file %d" % i for i in range(len(bad_files))]
    assert dict(zip(names, got)) == dict(zip(names, "T" + "F" * len(cases) + "E" * len(bad_files)))


def test_private_key_pem_round_trip_is_encrypted_unless_asked(tmp_path):
    key = signing.generate_key()
    enc = signing.private_key_pem(key, "pw")
    assert b"ENCRYPTED" in enc
    (tmp_path / "k.pem").write_bytes(enc)
    loaded = signing.load_private_key(tmp_path / "k.pem", "pw")
    assert loaded.private_numbers() == key.private_numbers()
    with pytest.raises(TypeError):
        signing.load_private_key(tmp_path / "k.pem", None)
    assert b"ENCRYPTED" not in signing.private_key_pem(key, None)
    assert serialization.load_pem_private_key(signing.private_key_pem(key, None), None)
