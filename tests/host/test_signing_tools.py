"""The `mpota keygen / manifest / sign / attach / verify` commands, end to end, including the
offline flow with a signature made by the openssl CLI, and the blob checked on the device."""
import os
import subprocess
import sys

import mpunix
from mpunix import ROOT
from mpota import fwimage


def mpota(*args, env=None, check=True):
    proc = subprocess.run([sys.executable, "-m", "mpota", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})))
    if check and proc.returncode:
        raise AssertionError(proc.stdout + proc.stderr)
    return proc


DEVICE = """
import sys
from ota import manifest, trust
m = manifest.check(open(sys.argv[2], "rb").read(), trust.load(sys.argv[1]), "esp32-generic", 3, 1 << 20)
print(m.id, m.version, m.counter)
"""


def test_keygen_offline_openssl_flow_and_device_check(tmp_path):
    pw = {"MPOTA_KEY_PASSWORD": "correct horse"}
    out = mpota("keygen", "--out", tmp_path / "k.pem", "--trust", tmp_path / "trust.bin", env=pw).stdout
    assert "correct horse" not in out and "PRIVATE" not in out
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "k.pem").read_bytes()
    assert oct((tmp_path / "k.pem").stat().st_mode & 0o777) == "0o600"
    assert mpota("keygen", "--out", tmp_path / "k.pem", "--no-password", check=False).returncode == 2

    fw = tmp_path / "fw.bin"
    fw.write_bytes(fwimage.build_image("1.0.1", {}, size=10000))
    mpota("manifest", fw, "--board", "esp32-generic", "--version", "1.0.1", "--counter", 3,
          "--pub", tmp_path / "k.pub.pem", "-o", tmp_path / "r.tbs")
    # Offline: openssl signs the exact bytes, mpota attaches and verifies.
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", tmp_path / "k.pem", "-passin", "pass:correct horse",
                          tmp_path / "r.tbs"], capture_output=True, check=True).stdout
    (tmp_path / "r.sig").write_bytes(sig)
    mpota("attach", tmp_path / "r.tbs", tmp_path / "r.sig", "-o", tmp_path / "r.blob")
    good = mpota("verify", tmp_path / "r.blob", "--pub", tmp_path / "k.pub.pem", "--firmware", fw)
    assert '"version": "1.0.1"' in good.stdout

    # Online signing gives a blob the device accepts too.
    mpota("sign", tmp_path / "r.tbs", "--key", tmp_path / "k.pem", "-o", tmp_path / "s.blob", env=pw)
    for blob in ("r.blob", "s.blob"):
        line = mpunix.run(DEVICE, args=[tmp_path / "trust.bin", tmp_path / blob]).stdout.split()
        assert line[1:] == ["1.0.1", "3"]

    # Refusals: a flipped bit, the wrong key, the wrong firmware.
    blob = bytearray((tmp_path / "r.blob").read_bytes())
    blob[40] ^= 1
    (tmp_path / "bad.blob").write_bytes(bytes(blob))
    assert mpota("verify", tmp_path / "bad.blob", "--pub", tmp_path / "k.pub.pem", check=False).returncode == 1
    mpota("keygen", "--out", tmp_path / "o.pem", "--trust", tmp_path / "o.bin", "--no-password")
    assert mpota("verify", tmp_path / "r.blob", "--pub", tmp_path / "o.pub.pem", check=False).returncode == 1
    fw.write_bytes(b"other")
    assert mpota("verify", tmp_path / "r.blob", "--pub", tmp_path / "k.pub.pem", "--firmware", fw, check=False).returncode == 1


def test_attach_accepts_raw_r_s_and_refuses_garbage(tmp_path):
    mpota("keygen", "--out", tmp_path / "k.pem", "--trust", tmp_path / "trust.bin", "--no-password")
    fw = tmp_path / "fw.bin"
    fw.write_bytes(fwimage.build_image("1", {}, size=4096))
    mpota("manifest", fw, "--board", "b1", "--version", "1", "--counter", 0, "--chunk-size", 1024,
          "--pub", tmp_path / "k.pub.pem", "-o", tmp_path / "r.tbs")
    der = subprocess.run(["openssl", "dgst", "-sha256", "-sign", tmp_path / "k.pem", tmp_path / "r.tbs"],
                         capture_output=True, check=True).stdout
    from mpota import signing

    raw = b"".join(v.to_bytes(32, "big") for v in signing.decode_dss_signature(der))
    (tmp_path / "raw.sig").write_bytes(raw)
    mpota("attach", tmp_path / "r.tbs", tmp_path / "raw.sig", "-o", tmp_path / "r.blob")
    mpota("verify", tmp_path / "r.blob", "--pub", tmp_path / "k.pub.pem")
    (tmp_path / "bad.sig").write_bytes(der + b"\x00")
    assert mpota("attach", tmp_path / "r.tbs", tmp_path / "bad.sig", "-o", tmp_path / "x", check=False).returncode == 2
    assert "--no-password" in mpota("keygen", "--help").stdout
