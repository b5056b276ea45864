"""Key rotation and revocation over the air (docs/FORMAT.md section 7), end to end: `mpota key
rotate` adds a new key, then retires the old one; each trust update is published with `mpota
publish` and taken by a simulated board without a reboot; the retired key's releases are refused,
an older trust file cannot be replayed, the new key's release installs; the audit log says so."""
import json
import subprocess
import sys

import pytest

from e2e_env import Fleet
from mpunix import ROOT
from pipeline_env import FW_HEALTHY
from mpota import signing


@pytest.fixture
def fleet(tmp_path, mosquitto, sim_device):
    return Fleet(tmp_path, mosquitto(), sim_device)


def mpota(*args):
    return subprocess.run([sys.executable, "-m", "mpota", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def state_of(device, **want):
    return lambda s: all((s.get(device) or {}).get(k) == v for k, v in want.items())


def test_rotate_then_retire_the_old_key_over_the_air(fleet, tmp_path):
    board = fleet.board("dev-1")
    old_pem = tmp_path / "old.pem"
    old_pem.write_bytes(signing.private_key_pem(fleet.signer.key, None))
    old_id = signing.public_key_id(fleet.signer.key.public_key()).hex()
    assert mpota("keygen", "--out", tmp_path / "new.pem", "--no-password", "--trust", tmp_path / "unused.bin").returncode == 0
    new_key = signing.load_private_key(tmp_path / "new.pem")
    common = ["--no-password", "--board", "esp32-generic", "--audit-dir", tmp_path]
    board.start()
    fleet.wait_state(state_of("dev-1", version="1.0.0"))

    # Step 1: trust the new key too, signed by the old one.
    step1 = mpota("key", "rotate", "--add", tmp_path / "new.pub.pem", "--trust", fleet.signer.trust,
                  "--sign-key", old_pem, "-o", tmp_path / "t1.bin", *common)
    assert step1.returncode == 0, step1.stderr
    t1 = (tmp_path / "t1.bin.manifest").read_bytes()
    assert fleet.publish(t1, (tmp_path / "t1.bin").read_bytes()).returncode == 0
    fleet.wait_state(state_of("dev-1", release=signing.manifest_id(t1), state="idle"))

    # Step 2: retire the old key, signed by the new one (now trusted).
    step2 = mpota("key", "rotate", "--retire", old_id, "--trust", tmp_path / "t1.bin", "--sign-key", tmp_path / "new.pem",
                  "-o", tmp_path / "t2.bin", *common)
    assert step2.returncode == 0, step2.stderr
    t2 = (tmp_path / "t2.bin.manifest").read_bytes()
    assert fleet.publish(t2, (tmp_path / "t2.bin").read_bytes()).returncode == 0
    fleet.wait_state(state_of("dev-1", release=signing.manifest_id(t2), state="idle"))
    assert board.boot_log()[-1]["version"] == "1.0.0" and len(board.boot_log()) == 1  # no reboot for trust

    # The serial 1 trust file (which still trusts the old key) cannot come back: not as it was
    # (its signer is retired), nor signed by a key still trusted (its serial is too low).
    t1_file = (tmp_path / "t1.bin").read_bytes()
    assert fleet.publish(t1, t1_file).returncode == 0
    fleet.wait_state(state_of("dev-1", reason="unknown_key"))
    resigned = signing.sign(signing.build_manifest(t1_file, board="esp32-generic", version="trust-1b", counter=1,
                                                   chunk_size=4096, key_id=new_key.public_key(), target="trust"), new_key)
    assert fleet.publish(resigned, t1_file).returncode == 0
    fleet.wait_state(state_of("dev-1", reason="downgrade"))
    # A release signed by the retired key is refused; one signed by the new key installs.
    blob, image = fleet.signer.release("2.0.0", {"fw": FW_HEALTHY}, counter=2, size=64 * 1024)
    assert fleet.publish(blob, image).returncode == 0
    fleet.wait_state(state_of("dev-1", reason="unknown_key"))
    fleet.signer.key = new_key
    blob, image = fleet.signer.release("2.0.1", {"fw": FW_HEALTHY}, counter=2, size=64 * 1024)
    assert fleet.publish(blob, image).returncode == 0
    fleet.wait_state(state_of("dev-1", version="2.0.1", state="idle"), timeout=180)

    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [(a["action"], a["outcome"]) for a in audit] == [("key_rotate", "serial 1"), ("key_rotate", "serial 2")]
    assert audit[1]["reason"] == old_id


def test_revoke_refuses_to_lock_the_devices_out(tmp_path):
    key = signing.generate_key()
    (tmp_path / "k.pem").write_bytes(signing.private_key_pem(key, None))
    signing.write_trust_file([key.public_key()], tmp_path / "trust.bin")
    kid = signing.public_key_id(key.public_key()).hex()
    args = ["--trust", tmp_path / "trust.bin", "--sign-key", tmp_path / "k.pem", "--no-password", "--board", "b",
            "-o", tmp_path / "next.bin"]
    proc = mpota("key", "revoke", kid, *args)
    assert proc.returncode == 2 and "another trust key" in proc.stderr
    other = signing.generate_key()
    (tmp_path / "o.pem").write_bytes(signing.private_key_pem(other, None))
    args[3] = tmp_path / "o.pem"
    proc = mpota("key", "revoke", kid, *args)  # signed by a key the devices do not trust
    assert proc.returncode == 2 and "not trusted with the trust role" in proc.stderr
    assert not (tmp_path / "next.bin").exists()


def test_a_timestamp_key_is_made_alone_and_added_by_rotation(tmp_path):
    proc = mpota("keygen", "--out", tmp_path / "ts.pem", "--no-password", "--role", "timestamp", "--trust",
                 tmp_path / "ts-trust.bin")
    assert proc.returncode == 0 and "mpota key rotate --add" in proc.stdout
    assert not (tmp_path / "ts-trust.bin").exists()  # a trust file with only a timestamp key would lock devices out
    proc = mpota("keygen", "--out", tmp_path / "bad.pem", "--no-password", "--role", "timestamp,release")
    assert proc.returncode == 2 and "no other role" in proc.stderr
    assert not (tmp_path / "bad.pem").exists()
