"""A power cut inside an otadata write can leave the state word half programmed while seq and CRC
stay intact (the CRC covers only seq). The bootloader boots such an entry with no trial, so the
device must not take it for a confirmed image: it fails closed and the last confirmed firmware
runs again (ESP-IDF bootloader_utility.c, bootloader_utility_get_selected_boot_partition())."""
import json
import struct
import zlib

import pytest

from pipeline_env import FW_UNHEALTHY, PipelineBoard, new_signer
from test_agent_survives import BOOT_WITHOUT_LIB
from plugin_sim import partition
from releases import release_id

OTADATA = partition("otadata")[3]


def tear_state_word(device, slot, state):
    """Give the newest otadata entry of OTA `slot` the state word `state`, seq and CRC intact."""
    flash = bytearray(device.flash.read_bytes())
    entries = [(e["seq"], i) for i, e in enumerate(device.otadata()) if e["seq"] != 0xFFFFFFFF and (e["seq"] - 1) % 2 == slot]
    seq, index = max(entries)
    struct.pack_into("<I", flash, OTADATA + index * 4096 + 24, state)
    device.flash.write_bytes(flash)
    assert device.otadata()[index]["seq"] == seq and device.otadata()[index]["crc"] == zlib.crc32(struct.pack("<I", seq), 0xFFFFFFFF)


def state_file(device, name):
    blob = device.read_file(".ota/" + name)  # from the board's LittleFS
    assert struct.unpack("<I", blob[-4:])[0] == zlib.crc32(blob[:-4])
    return json.loads(blob[:-4])


def history(device):
    """The anti-downgrade record as the device reads it: the newest of its two copies, with the
    highest counter of both (lib/ota/history.py)."""
    copies = [state_file(device, name) for name in ("history.0", "history.1")]
    newest = max(copies, key=lambda h: h["seq"])
    return dict(newest, counter=max(h["counter"] for h in copies))


# NEW (0) -> PENDING_VERIFY (1) by the bootloader: the low half programmed, the high half still erased;
# and a word with only some bits of PENDING_VERIFY's zeros programmed.
@pytest.mark.parametrize("torn", [0xFFFF0001, 0x00FFFFFF], ids=["half-word", "three-bytes-erased"])
def test_torn_state_word_never_confirms_a_failing_firmware(sim_device, tmp_path, torn):
    signer = new_signer(tmp_path)
    board = PipelineBoard(sim_device, signer, wdt_ms=1000, confirm_within_ms=3000)
    # What the board installed in ota_0 under its first otadata entry (seq 1).
    record = json.dumps({"ota_0": [1, "release-one", "1.0.0"]}).encode()
    board.device.write_files({".ota/installed": record + struct.pack("<I", zlib.crc32(record))})
    blob, image = signer.release("2.0.0", {"fw": FW_UNHEALTHY}, counter=2, size=64 * 1024)
    board.stage(blob, image)
    board.device.run(timeout=60, max_boots=1)  # installs, resets: the power goes before the bootloader's write
    assert board.kinds()[-1] == "rebooting"
    tear_state_word(board.device, 1, torn)

    board.device.run(timeout=90)
    boots = board.device.boot_log()
    assert boots[1]["slot"] == "ota_1" and boots[1]["state"] == str(torn)  # the bootloader took it as it is
    assert boots[2]["slot"] == "ota_0" and boots[-1]["version"] == "1.0.0"
    mine = release_id(blob)
    assert not [f for k, f in board.events() if k == "confirmed" and f["release"] == mine]
    rolled = [(f["reason"], f["version"]) for k, f in board.events() if k == "rolled_back"]
    # First the torn boot (power_loss: installed again), then the trial the release really fails;
    # the old image, booted again under a new otadata entry, still knows what it is.
    assert rolled == [("power_loss", "1.0.0"), ("health_check_failed", "1.0.0")]
    assert [f["release"] for k, f in board.events() if k == "confirmed"] == ["release-one"]
    record = history(board.device)
    assert record["counter"] < 2 and mine in record["failed"]


def test_torn_state_word_under_a_firmware_that_cannot_import_ota_boots_the_previous_one(sim_device, tmp_path):
    """boot.py's guard (built-in modules only) fails closed on a torn state word too."""
    signer = new_signer(tmp_path)
    board = PipelineBoard(sim_device, signer, wdt_ms=1000, confirm_within_ms=3000)
    blob, image = signer.release("2.0.0", {"fw": FW_UNHEALTHY, "_boot": BOOT_WITHOUT_LIB}, counter=2, size=64 * 1024)
    board.stage(blob, image)
    board.device.run(timeout=60, max_boots=1)
    tear_state_word(board.device, 1, 0xFFFF0001)

    board.device.run(timeout=90)
    boots = board.device.boot_log()
    assert (boots[1]["slot"], boots[1]["state"]) == ("ota_1", str(0xFFFF0001))
    assert "the package cannot run on this firmware; booting the previous one" in board.device.console
    assert boots[2]["slot"] == "ota_0" and boots[-1]["version"] == "1.0.0"
    mine = release_id(blob)
    assert not [f for k, f in board.events() if k == "confirmed" and f["release"] == mine]
    assert history(board.device)["counter"] < 2
