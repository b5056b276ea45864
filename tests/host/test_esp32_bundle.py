"""App bundles on a simulated ESP32: the same bundles update the application without touching
the firmware slots, roll back the same way, and the same device still takes firmware releases."""
import json

import pytest

from mpunix import install_mpy
from pipeline_env import FW_HEALTHY, FW_UNHEALTHY
from rp2_env import BundleSigner, bundle_board_files, events, staged
from mpota import signing

BOARD = "esp32-generic"


@pytest.fixture
def signer(tmp_path):
    return BundleSigner(tmp_path / "keys")


def _board(sim_device, signer, firmware):
    device = sim_device(firmware("1.0.0", {"fw": FW_HEALTHY}), heapsize="200K")
    install_mpy(device.fs / "lib")
    first = signer.bundle("1.0.0", FW_HEALTHY, counter=1, board=BOARD)
    device.write_files(bundle_board_files(signer, first, board=BOARD, confirm_within_ms=2000))
    return device


def _record(device):
    return json.loads(device.read_file(".ota/bundle")[:-4])  # from the board's LittleFS


def _stage(device, blob, payload):
    device.write_files(staged("release", blob, payload))


def test_bundle_updates_the_application_and_leaves_the_firmware_slots_alone(sim_device, firmware, signer):
    device = _board(sim_device, signer, firmware)
    device.run(timeout=60)  # the first boot: the bootloader initialises otadata
    otadata, spare = device.otadata(), device.read_partition("ota_1")
    blob, data = signer.bundle("2.0.0", FW_HEALTHY, counter=2, board=BOARD)
    _stage(device, blob, data)
    console = device.run(timeout=60)
    assert "confirmed" in [k for k, _ in events(console)], console
    assert _record(device)["active"] == "b" and _record(device)["release"] == signing.manifest_id(blob)
    assert device.read_file("apps/b/version.txt") == b"2.0.0"
    assert {b["slot"] for b in device.boot_log()} == {"ota_0"}
    assert device.otadata() == otadata and device.read_partition("ota_1") == spare


def test_failing_bundle_rolls_back_on_esp32(sim_device, firmware, signer):
    device = _board(sim_device, signer, firmware)
    blob, data = signer.bundle("2.0.0", FW_UNHEALTHY, counter=2, board=BOARD)
    _stage(device, blob, data)
    console = device.run(timeout=60)
    rolled = [f for k, f in events(console) if k == "rolled_back"]
    assert rolled and rolled[0]["reason"] == "health_check_failed", console
    assert _record(device)["active"] == "a"
    assert device.boot_log()[-1]["slot"] == "ota_0"


def test_one_device_takes_both_kinds_of_release(sim_device, firmware, signer):
    """A bundle first, then a firmware through the same updater: each has its own trial and its
    own anti-downgrade floor (the firmware's counter 1 is below the bundle's 5)."""
    device = _board(sim_device, signer, firmware)
    blob, data = signer.bundle("2.0.0", FW_HEALTHY, counter=5, board=BOARD)
    _stage(device, blob, data)
    device.run(timeout=60)
    assert _record(device)["release"] == signing.manifest_id(blob)
    fw_blob, image = signer.release("2.0.0", {"fw": FW_HEALTHY}, counter=1)
    _stage(device, fw_blob, image)
    console = device.run(timeout=60)
    assert "confirmed" in [k for k, _ in events(console)], console
    last = device.boot_log()[-1]
    assert (last["slot"], last["version"], last["state"]) == ("ota_1", "2.0.0", "VALID")
    assert _record(device)["active"] == "b"  # the application bundle is still the one running
