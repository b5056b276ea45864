"""Full and delta over a real mosquitto (TLS): `mpota manifest --delta-from` and `mpota publish
--delta` on the host, the project's main.py on simulated boards. The board that runs the delta's
base takes the delta, the other takes the full (deflate) release; both confirm after a trial
boot, and `mpota status` shows which one each took."""
import hashlib
import json
import struct
import subprocess
import sys

from e2e_env import Fleet
from mpunix import ROOT
from pipeline_env import FW_HEALTHY
from mpota import imagecheck, signing
from mpota.fwimage import build_image


def mpota(*args):
    return subprocess.run([sys.executable, "-m", "mpota", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_publisher_sends_full_and_delta_and_each_device_picks(tmp_path, mosquitto, sim_device):
    fleet = Fleet(tmp_path, mosquitto(tls=True), sim_device)
    on_base = fleet.board("on-base")
    elsewhere = fleet.board("elsewhere", firmware=FW_HEALTHY + "# another 1.0.0 build\n")
    for board in (on_base, elsewhere):
        board.start()
    fleet.wait_state(lambda s: all((s.get(d) or {}).get("version") == "1.0.0" for d in ("on-base", "elsewhere")))

    base = fleet.signer.release("1.0.0", {"fw": FW_HEALTHY})[1]
    image = build_image("2.0.0", {"fw": FW_HEALTHY}, size=128 * 1024)
    full, _ = fleet.signer.release_of(image, version="2.0.0", counter=2, encoding="deflate")
    files = {name: tmp_path / name for name in ("old.bin", "new.bin", "pub.pem", "key.pem", "delta.tbs", "delta.sig")}
    files["old.bin"].write_bytes(base)
    files["new.bin"].write_bytes(image)
    files["pub.pem"].write_bytes(signing.public_key_pem(fleet.signer.key.public_key()))
    files["key.pem"].write_bytes(signing.private_key_pem(fleet.signer.key, None))
    made = mpota("manifest", files["new.bin"], "--board", "esp32-generic", "--version", "2.0.0", "--counter", 2,
                 "--delta-from", files["old.bin"], "--pub", files["pub.pem"], "-o", files["delta.tbs"])
    assert made.returncode == 0 and "delta payload" in made.stdout, made.stderr
    assert mpota("sign", files["delta.tbs"], "--key", files["key.pem"], "--no-password", "-o",
                 files["delta.sig"]).returncode == 0

    published = fleet.publish(full, image, "--delta", files["delta.sig"], "--delta-from", files["old.bin"])
    assert published.returncode == 0, published.stderr
    assert "full (deflate)" in published.stdout and "delta " in published.stdout

    def both_confirmed(states):
        return all((states.get(d) or {}).get("version") == "2.0.0" and states[d].get("state") == "idle"
                   for d in ("on-base", "elsewhere"))

    states = fleet.wait_state(both_confirmed, timeout=240)
    rid = signing.manifest_id(full)
    assert states["on-base"]["encoding"] == "delta" and states["elsewhere"]["encoding"] == "deflate"
    assert states["on-base"]["release"] == rid and states["elsewhere"]["release"] == rid
    for board in (on_base, elsewhere):
        assert board.read_partition("ota_1")[:len(image)] == image
        assert [b["state"] for b in board.boot_log()][1] == "PENDING_VERIFY"

    status = mpota("status", "--json", "--broker", "%s:%d" % (fleet.broker.host, fleet.broker.port),
                   "--cafile", fleet.broker.pki.ca_file)
    assert status.returncode == 0, status.stderr
    rows = json.loads(status.stdout)
    assert rows["on-base"]["encoding"] == "delta" and rows["elsewhere"]["encoding"] == "deflate"

    # the delta is offered inside the fleet's manifest message: pruning it alone is refused
    pruned = mpota("prune", signing.manifest_id(files["delta.sig"].read_bytes()), "--broker",
                   "%s:%d" % (fleet.broker.host, fleet.broker.port), "--cafile", fleet.broker.pki.ca_file)
    assert pruned.returncode == 1 and "still offered" in pruned.stderr


def test_manifest_refuses_a_base_no_device_runs(tmp_path):
    image = build_image("2.0.0", {"fw": FW_HEALTHY})
    (tmp_path / "new.bin").write_bytes(image)
    (tmp_path / "old.bin").write_bytes(b"\x7fELF" + bytes(4000))  # a host executable, not an app image
    made = mpota("manifest", tmp_path / "new.bin", "--board", "esp32-generic", "--version", "2.0.0", "--counter", 2,
                 "--delta-from", tmp_path / "old.bin", "--key-id", "00" * 8, "-o", tmp_path / "delta.tbs")
    assert made.returncode == 2 and "not an ESP32 image" in made.stderr and "no device could take a delta" in made.stderr
    assert len(made.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "delta.tbs").exists()


def _rechip(image, chip_id):
    """`image` as built for another chip: the header's chip_id changed, the appended SHA-256 redone."""
    out = bytearray(image)
    struct.pack_into("<H", out, 12, chip_id)
    end = imagecheck.image_length(image, "image")
    if out[23]:  # hash_appended
        out[end - 32:end] = hashlib.sha256(bytes(out[:end - 32])).digest()
    return bytes(out)


def test_manifest_refuses_a_corrupt_foreign_or_identical_base(tmp_path):
    """The base goes through the same app-image checks as a release (imagecheck): a corrupt one,
    one for another chip, and the new image itself are refused before anything is written."""
    image = build_image("2.0.0", {"fw": FW_HEALTHY})
    old = build_image("1.0.0", {"fw": FW_HEALTHY})
    corrupt = bytearray(old)
    corrupt[100] ^= 0xFF
    (tmp_path / "new.bin").write_bytes(image)
    cases = {"corrupt": (bytes(corrupt), "corrupt"), "chip": (_rechip(old, 5), "another chip"),
             "same": (image, "nothing to patch"), "good": (old, None)}
    for name, (base, says) in cases.items():
        (tmp_path / "old.bin").write_bytes(base)
        made = mpota("manifest", tmp_path / "new.bin", "--board", "esp32-generic", "--version", "2.0.0", "--counter",
                     2, "--delta-from", tmp_path / "old.bin", "--key-id", "00" * 8, "-o", tmp_path / (name + ".tbs"))
        if says is None:
            assert made.returncode == 0, made.stderr
        else:
            assert made.returncode == 2 and says in made.stderr, (name, made.stderr)
            assert not (tmp_path / (name + ".tbs")).exists()
