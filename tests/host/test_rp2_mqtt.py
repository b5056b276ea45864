"""A simulated Pico W over a real mosquitto with TLS: `mpota bundle build`, `mpota manifest`,
`mpota sign`, `mpota publish` on the host; the bundle travels ota.service → MQTT → bundle sink
→ trial boot → confirm, and the retained state says so. A bundle that fails its check is rolled
back and reported the same way."""
import subprocess
import sys

import pytest

from e2e_env import Fleet
from mpunix import ROOT
from pipeline_env import FW_HEALTHY, FW_UNHEALTHY
from rp2_env import BUNDLE_MQTT_APP, BundleSigner, bundle_board_files, rp2_device  # noqa: F401
from mpota import signing


@pytest.fixture
def fleet(tmp_path, mosquitto, sim_device):
    fleet = Fleet(tmp_path, mosquitto(tls=True), sim_device, fleet="picos")
    fleet.signer = BundleSigner(tmp_path / "bundle-keys")
    return fleet


def _pico(fleet, rp2_device, device_id):
    broker = fleet.broker
    config = {"device_id": device_id, "fleet": fleet.fleet,
              "broker": {"host": broker.host, "port": broker.port, "tls": True, "ca": "certs/ca.der",
                         "server_hostname": "localhost", "keepalive": 10}}
    first = fleet.signer.bundle("1.0.0", FW_HEALTHY, counter=1, main=BUNDLE_MQTT_APP)
    files = bundle_board_files(fleet.signer, first, wdt_ms=8000, confirm_within_ms=60000, config=config)
    files["certs/ca.der"] = broker.pki.ca_der
    device = rp2_device(files, heapsize="240K")  # TLS allocates from the unix port's heap, 64-bit objects
    device.install_lib()
    fleet.boards[device_id] = device
    return device


def _cli(*args):
    proc = subprocess.run([sys.executable, "-m", "mpota", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _release(tmp_path, signer, folder, version, counter, encoding="raw"):
    """bundle build → manifest → sign, with the real CLI; returns (blob, bundle bytes)."""
    pem = tmp_path / "release.pem"
    pem.write_bytes(signing.private_key_pem(signer.key, None))
    out = tmp_path / ("%s.bundle" % version)
    _cli("bundle", "build", str(folder), "-o", str(out))
    _cli("manifest", str(out), "--board", "rp2-pico-w", "--version", version, "--counter", str(counter),
         "--chunk-size", "1024", "--encoding", encoding, "--key-id", signing.public_key_id(signer.key.public_key()).hex(), "-o", str(tmp_path / "tbs"))
    _cli("sign", str(tmp_path / "tbs"), "--key", str(pem), "--no-password", "-o", str(tmp_path / "blob"))
    return (tmp_path / "blob").read_bytes(), out.read_bytes()


def _app_folder(tmp_path, name, behaviour):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "main.py").write_text(BUNDLE_MQTT_APP)
    (folder / "behaviour.py").write_text(behaviour)
    (folder / "lib").mkdir()
    (folder / "lib" / "sensor.py").write_text("def read():\n    return 21.5\n")
    return folder


def test_pico_takes_a_published_bundle_and_rolls_back_a_bad_one(fleet, rp2_device, tmp_path):
    pico = _pico(fleet, rp2_device, "pico-1")
    pico.start()
    fleet.wait_state(lambda s: (s.get("pico-1") or {}).get("version") == "1.0.0", timeout=120)

    blob, data = _release(tmp_path, fleet.signer, _app_folder(tmp_path, "good", FW_HEALTHY), "2.0.0", 2)
    assert fleet.publish(blob, data).returncode == 0
    states = fleet.wait_state(lambda s: (s.get("pico-1") or {}).get("version") == "2.0.0"
                              and s["pico-1"].get("state") == "idle", timeout=180)
    assert states["pico-1"]["release"] == signing.manifest_id(blob)

    # deflated in transit: inflated chunk by chunk into the bundle sink, then tried and rolled back
    bad_blob, bad = _release(tmp_path, fleet.signer, _app_folder(tmp_path, "bad", FW_UNHEALTHY), "3.0.0", 3, "deflate")
    assert signing.parse_blob(bad_blob)[2]["encoding"] == "deflate"
    assert fleet.publish(bad_blob, bad).returncode == 0
    # idle: the state retained just before the rollback's reset already names the reason (rebooting, 3.0.0)
    states = fleet.wait_state(lambda s: (s.get("pico-1") or {}).get("reason") == "health_check_failed"
                              and s["pico-1"].get("state") == "idle", timeout=180)
    assert states["pico-1"]["version"] == "2.0.0"
    assert not fleet.broker.dropped_lines()
    pico.power_cut()
    files = pico.read_files()
    assert files["apps/b/lib/sensor.py"].startswith(b"def read")
