"""The device's P-256 verifier (ota.p256) on the board: a subset of NIST CAVP SigVer cases and
signatures made now with `cryptography`, compared with the expected verdicts."""
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

from mpota import signing
from vectors import cavp_cases



def sigver_cases(count):
    """The first `count` [P-256,SHA-256] SigVer cases: (public key, digest, DER signature, valid)."""
    return [(ec.EllipticCurvePublicNumbers(qx, qy, ec.SECP256R1()).public_key(), digest, encode_dss_signature(r, s),
             valid) for qx, qy, digest, r, s, valid in cavp_cases("SigVer.rsp")[:count]]


def test_cavp_sigver_subset_and_fresh_signatures(deployed, tmp_path):
    board = deployed
    cavp = sigver_cases(6)
    assert {c[3] for c in cavp} == {True, False}
    # the CAVP keys share one small trust file (4-teeth tables); the fresh key gets the default
    cavp_trust = tmp_path / "cavp.bin"
    cavp_trust.write_bytes(signing.trust_file_bytes([c[0] for c in cavp], teeth=4))
    key = ec.generate_private_key(ec.SECP256R1())
    signing.write_trust_file([key.public_key()], tmp_path / "fresh.bin")
    lines, expected = [], ""
    for public, digest, sig, valid in cavp:
        lines.append("vt_cavp.bin %s %s %s" % (signing.public_key_id(public).hex(), digest.hex(), sig.hex()))
        expected += "T" if valid else "F"
    kid = signing.public_key_id(key.public_key()).hex()
    for i in range(3):
        digest = os.urandom(32)
        sig = key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        tampered = bytearray(digest)
        tampered[i] ^= 1
        lines += ["vt_fresh.bin %s %s %s" % (kid, d.hex(), sig.hex()) for d in (digest, bytes(tampered))]
        expected += "TF"
    (tmp_path / "cases.txt").write_text("\n".join(lines) + "\n")
    for name in ("cavp.bin", "fresh.bin", "cases.txt"):
        board.put(tmp_path / name, "vt_" + name)
    result = board.run("verify_vectors", cases="vt_cases.txt")
    assert result["verdicts"] == expected
    assert result["ticks"] >= 4 * len(expected)  # the watchdog hook ran during every verify
    board.mpremote("exec", "import os\nfor n in ('vt_cavp.bin', 'vt_fresh.bin', 'vt_cases.txt'): os.remove(n)")
