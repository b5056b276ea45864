"""Every mistake a user can make on the command line ends in one line on stderr that names the
file or setting and what to do, with exit code 2; exit code 1 is kept for "checked and refused"."""
import os
import subprocess
import sys

import pytest

from mpunix import ROOT
from mpota import fwimage

PASSWORD = {"MPOTA_KEY_PASSWORD": "correct horse"}


def mpota(*args, env=None, cwd=None):
    base = {k: v for k, v in os.environ.items() if k != "MPOTA_KEY_PASSWORD"}
    return subprocess.run([sys.executable, "-m", "mpota", *map(str, args)], cwd=cwd or ROOT, capture_output=True,
                          text=True, env=dict(base, **(env or {})), stdin=subprocess.DEVNULL, timeout=60)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    assert mpota("keygen", "--out", d / "k.pem", "--trust", d / "trust.bin", env=PASSWORD).returncode == 0
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", d / "rsa.pem"],
                   check=True, capture_output=True)
    (d / "junk.pem").write_text("not a key\n")
    (d / "fw.bin").write_bytes(fwimage.build_image("1.0.0", {}, size=8192))
    assert mpota("manifest", d / "fw.bin", "--board", "esp32-generic", "--version", "1.0.0", "--counter", 1,
                 "--pub", d / "k.pub.pem", "-o", d / "r.tbs").returncode == 0
    assert mpota("sign", d / "r.tbs", "--key", d / "k.pem", "-o", d / "r.sig", env=PASSWORD).returncode == 0
    return d


def one_line_error(proc, *words):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for word in words:
        assert str(word) in lines[0], (word, lines[0])
    return lines[0]


def sign(keys, key, env=PASSWORD, *extra):
    return mpota("sign", keys / "r.tbs", "--key", key, "-o", keys / "out.sig", *extra, env=env)


def test_sign_wrong_password(keys):
    one_line_error(sign(keys, keys / "k.pem", {"MPOTA_KEY_PASSWORD": "wrong"}), keys / "k.pem", "wrong password")


def test_sign_missing_key_file(keys):
    one_line_error(sign(keys, keys / "absent.pem"), keys / "absent.pem", "No such file")


def test_sign_with_a_public_key(keys):
    one_line_error(sign(keys, keys / "k.pub.pem"), keys / "k.pub.pem", "not a private key", "mpota keygen")


def test_sign_with_an_rsa_key(keys):
    one_line_error(sign(keys, keys / "rsa.pem"), keys / "rsa.pem", "P-256")


def test_sign_encrypted_key_with_no_password_flag(keys):
    one_line_error(sign(keys, keys / "k.pem", PASSWORD, "--no-password"), keys / "k.pem", "encrypted")


def test_sign_a_file_that_is_not_a_manifest(keys):
    proc = mpota("sign", keys / "fw.bin", "--key", keys / "k.pem", "-o", keys / "x", env=PASSWORD)
    one_line_error(proc, keys / "fw.bin", "mpota manifest")


def test_sign_without_terminal_or_password_variable(keys):
    one_line_error(sign(keys, keys / "k.pem", {}), "MPOTA_KEY_PASSWORD", "terminal")


def test_keygen_without_terminal_or_password_variable(tmp_path):
    one_line_error(mpota("keygen", "--out", tmp_path / "n.pem", "--trust", tmp_path / "t.bin"), "MPOTA_KEY_PASSWORD")
    assert not (tmp_path / "n.pem").exists()


def test_keygen_also_trust_junk_writes_nothing(keys, tmp_path):
    proc = mpota("keygen", "--out", tmp_path / "n.pem", "--no-password", "--also-trust", keys / "junk.pem")
    one_line_error(proc, keys / "junk.pem")
    assert not (tmp_path / "n.pem").exists()


def test_manifest_pub_given_a_private_key(keys):
    proc = mpota("manifest", keys / "fw.bin", "--board", "esp32-generic", "--version", "1", "--counter", 1,
                 "--pub", keys / "k.pem", "-o", keys / "x.tbs")
    one_line_error(proc, keys / "k.pem", "private key")


@pytest.mark.parametrize("pub", ["absent.pem", "junk.pem", "rsa.pem"])
def test_verify_pub_missing_or_junk(keys, pub):
    one_line_error(mpota("verify", keys / "r.sig", "--pub", keys / pub), keys / pub)


def test_verify_bad_signature_is_refused_with_its_reason_on_stderr(keys, tmp_path):
    blob = bytearray((keys / "r.sig").read_bytes())
    blob[-5] ^= 1
    (tmp_path / "bad.sig").write_bytes(bytes(blob))
    proc = mpota("verify", tmp_path / "bad.sig", "--pub", keys / "k.pub.pem")
    assert proc.returncode == 1 and proc.stdout == ""
    line = proc.stderr.strip()
    assert line.startswith("REFUSED: ") and len(line) > len("REFUSED: ") + 10 and "\n" not in line, proc.stderr


@pytest.mark.parametrize("option", ["--cafile", "--cert", "--key"])
def test_publish_tls_file_missing(keys, option):
    tls = {"--cafile": keys / "k.pub.pem", "--cert": keys / "k.pub.pem", "--key": keys / "k.pem"}
    tls[option] = keys / "missing.pem"
    args = [a for kv in tls.items() for a in kv]
    proc = mpota("publish", keys / "r.sig", keys / "fw.bin", "--fleet", "home", "--broker", "127.0.0.1:1", *args)
    one_line_error(proc, option, keys / "missing.pem", "mpota fleet")


def test_publish_tls_file_that_is_not_pem(keys):
    proc = mpota("publish", keys / "r.sig", keys / "fw.bin", "--fleet", "home", "--broker", "127.0.0.1:1",
                 "--cafile", keys / "junk.pem")
    one_line_error(proc, "--cafile")


def test_version():
    proc = mpota("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("mpota "), proc.stdout + proc.stderr


def test_the_host_package_is_installed_as_mpota_and_nothing_named_tools(tmp_path):
    """`pip install -e .` maps the tools/ folder to the import name `mpota`: no top-level `tools`
    package lands on an interpreter's path to shadow another project's."""
    code = "import importlib.util, mpota.cli; print(importlib.util.find_spec('tools'), mpota.cli.__name__)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["None", "mpota.cli"], proc.stdout + proc.stderr
