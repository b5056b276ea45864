"""The install pipeline on the board simulator, device code under the unix port: chunks into the
inactive slot, verification of what is in flash, the switch, the trial boot and its outcome."""
import pytest

from pipeline_env import (FW_CRASHES, FW_HANGS, FW_HEALTHY, FW_NEVER_CONFIRMS, FW_NEVER_SURE, FW_UNHEALTHY,
                          FW_WARMS_UP, PipelineBoard, new_signer)
from releases import SLOT_SIZE, release_id


@pytest.fixture
def signer(tmp_path):
    return new_signer(tmp_path)


def slot_state(device, label):
    index = int(label[-1])
    entries = [e for e in device.otadata() if e["seq"] != 0xFFFFFFFF and (e["seq"] - 1) % 2 == index]
    return max(entries, key=lambda e: e["seq"])["state_name"] if entries else None


def test_happy_path_full_slot_image_shuffled_with_duplicates(sim_device, signer):
    board = PipelineBoard(sim_device, signer, app={"seed": 7, "duplicates": 100})
    blob, image = signer.release("2.0.0", {"fw": FW_HEALTHY}, counter=2, size=SLOT_SIZE, chunk_size=4096)
    board.stage(blob, image)
    board.device.run(timeout=120)
    boots = board.device.boot_log()
    assert [b["version"] for b in boots][:2] == ["1.0.0", "2.0.0"]
    assert boots[1]["state"] == "PENDING_VERIFY" and boots[-1]["version"] == "2.0.0"
    assert slot_state(board.device, "ota_1") == "VALID"
    assert board.device.read_partition("ota_1") == image
    kinds = board.kinds()
    for step in ("offered", "downloading", "verified", "installing", "rebooting", "trial", "confirmed"):
        assert step in kinds, step
    assert kinds.index("verified") < kinds.index("installing") < kinds.index("trial") < kinds.index("confirmed")
    confirmed = dict(board.events())["confirmed"]
    assert confirmed["release"] == release_id(blob) and confirmed["version"] == "2.0.0"


def test_chunk_size_that_does_not_divide_a_sector(sim_device, signer):
    board = PipelineBoard(sim_device, signer)
    blob, image = signer.release("2.0.0", {"fw": FW_HEALTHY}, counter=2, size=100_000, chunk_size=1000)
    board.stage(blob, image)
    board.device.run(timeout=60)
    assert board.device.boot_log()[-1]["version"] == "2.0.0"
    assert board.device.read_partition("ota_1")[: len(image)] == image


@pytest.mark.parametrize(
    "behaviour, reason",
    [(FW_UNHEALTHY, "health_check_failed"), (FW_HANGS, "watchdog"), (FW_CRASHES, "watchdog"),
     (FW_NEVER_CONFIRMS, "confirm_timeout"), (FW_NEVER_SURE, "confirm_timeout")],
    ids=["failed-check", "hang", "crash", "never-confirms", "check-never-sure"],
)
def test_bad_firmware_rolls_back_by_itself(sim_device, signer, behaviour, reason):
    board = PipelineBoard(sim_device, signer, wdt_ms=1000, confirm_within_ms=1500)
    blob, image = signer.release("2.0.0", {"fw": behaviour}, counter=2, size=64 * 1024)
    board.stage(blob, image)
    board.device.run(timeout=60)
    versions = [b["version"] for b in board.device.boot_log()]
    assert versions[:3] == ["1.0.0", "2.0.0", "1.0.0"] and set(versions[2:]) == {"1.0.0"}
    assert slot_state(board.device, "ota_1") == "ABORTED"
    rolled = [f for k, f in board.events() if k == "rolled_back"]
    assert rolled == [{"release": release_id(blob), "target": "2.0.0", "version": "1.0.0", "reason": reason}]
    # The retained bad release is not tried again: the last boot ran the old firmware to idle.
    assert "confirmed" not in board.kinds() and board.kinds().count("installing") == 1


def test_refusals_leave_the_slot_untouched(sim_device, signer, tmp_path):
    board = PipelineBoard(sim_device, signer)
    too_big = signer.release("2.0.0", {"fw": FW_HEALTHY}, counter=2, size=SLOT_SIZE + 16)
    wrong_board = signer.release("2.0.0", {"fw": FW_HEALTHY}, counter=2, board="esp32s3-generic")
    foreign = new_signer(tmp_path / "other").release("2.0.0", {"fw": FW_HEALTHY}, counter=2)
    before = board.device.read_partition("ota_1")
    for (blob, image), reason in ((too_big, "too_large"), (wrong_board, "wrong_board"), (foreign, "unknown_key")):
        board.stage(blob, image)
        out = board.device.run(timeout=30)
        assert "REFUSED %s" % reason in out
    assert board.device.read_partition("ota_1") == before
    assert [b["version"] for b in board.device.boot_log()] == ["1.0.0"] * 3


def test_a_corrupted_chunk_is_refused_on_arrival_and_never_made_bootable(sim_device, signer):
    board = PipelineBoard(sim_device, signer)
    blob, image = signer.release("2.0.0", {"fw": FW_HEALTHY}, counter=2, size=64 * 1024)
    tampered = bytearray(image)
    tampered[40_000] ^= 1  # one chunk arrives corrupted, with the right length
    board.stage(blob, bytes(tampered), signed_image=image)
    out = board.device.run(timeout=30)
    assert "CHUNK_REFUSED 9 bad_chunk_digest" in out and "installing" not in board.kinds()
    assert [e["state_name"] for e in board.device.otadata() if e["seq"] != 0xFFFFFFFF] == ["VALID"]
    board.stage(blob, image)  # the next attempt fetches the one missing chunk and succeeds
    board.device.run(timeout=60)
    assert board.device.boot_log()[-1]["version"] == "2.0.0"
    assert board.device.read_partition("ota_1")[: len(image)] == image


def test_downgrade_refused_after_an_upgrade(sim_device, signer):
    board = PipelineBoard(sim_device, signer)
    board.stage(*signer.release("2.0.0", {"fw": FW_HEALTHY}, counter=5, size=32 * 1024))
    board.device.run(timeout=60)
    assert board.device.boot_log()[-1]["version"] == "2.0.0"
    board.stage(*signer.release("1.5.0", {"fw": FW_HEALTHY}, counter=4, size=32 * 1024))
    assert "REFUSED downgrade" in board.device.run(timeout=30)


FW_OFFERS_DURING_TRIAL = (
    "def start():\n"
    "    from ota import trust\n"
    "    from ota.errors import OTAError\n"
    "    from ota.updater import Updater\n"
    "    try:\n"
    "        Updater(trust.load(), 'esp32-generic').offer(open('/.sim/share/release/manifest.bin', 'rb').read())\n"
    "    except OTAError as exc:\n"
    "        print('TRIAL REFUSED', exc.reason)\n\n"
    "def healthy():\n"
    "    return True\n"
)


def test_no_update_starts_while_the_running_image_is_on_trial(sim_device, signer):
    board = PipelineBoard(sim_device, signer)
    board.stage(*signer.release("2.0.0", {"fw": FW_OFFERS_DURING_TRIAL}, counter=2, size=32 * 1024))
    out = board.device.run(timeout=60)
    assert "TRIAL REFUSED unconfirmed" in out
    assert board.device.boot_log()[-1]["version"] == "2.0.0"


def test_an_older_manifest_cannot_replace_a_download_in_progress(sim_device, signer):
    board = PipelineBoard(sim_device, signer, app={"seed": 1, "stop_after": 20})
    newer = signer.release("3.0.0", {"fw": FW_HEALTHY}, counter=3, size=128 * 1024)
    board.stage(*newer)
    board.device.run(timeout=30)  # twenty chunks in (the progress is saved at 64 KiB), then the app stops
    written = board.device.read_partition("ota_1")
    board.stage(*signer.release("2.0.0", {"fw": FW_HEALTHY}, counter=2, size=64 * 1024))
    assert "REFUSED busy" in board.device.run(timeout=30)
    assert board.device.read_partition("ota_1") == written  # nothing erased or written for it
    board.stage(*newer)  # the download it interrupted resumes where it was
    board.device.write_files({"app.json": '{"seed": 2}'})
    board.device.run(timeout=60)
    assert board.device.boot_log()[-1]["version"] == "3.0.0"
    resumed = [f["resumed"] for k, f in board.events() if k == "offered"]
    assert resumed[0] == 0 and resumed[-1] >= 16  # the saved progress, not zero


def test_install_waits_for_the_applications_permission(sim_device, signer):
    board = PipelineBoard(sim_device, signer, app={"seed": 1, "allow": False})
    board.stage(*signer.release("2.0.0", {"fw": FW_HEALTHY}, counter=2, size=32 * 1024))
    out = board.device.run(timeout=30)
    assert "NOT PERMITTED" in out and "awaiting_permission" in board.kinds() and "installing" not in board.kinds()
    assert [e["state_name"] for e in board.device.otadata() if e["seq"] != 0xFFFFFFFF] == ["VALID"]
    board.device.write_files({"app.json": '{"allow": true}'})  # the user said yes
    board.device.run(timeout=60)
    assert board.device.boot_log()[-1]["version"] == "2.0.0"


def test_a_check_that_cannot_tell_yet_is_asked_again(sim_device, signer):
    board = PipelineBoard(sim_device, signer)
    board.stage(*signer.release("2.0.0", {"fw": FW_WARMS_UP}, counter=2, size=32 * 1024))
    board.device.run(timeout=60)
    assert "confirmed" in board.kinds() and board.device.boot_log()[-1]["version"] == "2.0.0"
