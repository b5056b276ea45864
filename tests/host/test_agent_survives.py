"""The update agent survives the firmware it installs. A release that cannot run the `ota` package
from the filesystem still rolls back by itself (boot.py's guard arms the watchdog with built-in
modules only); a release with `ota` frozen in (the root manifest.py on a real build) keeps
updating after the filesystem copy is gone."""
from mpunix import LIB
from pipeline_env import FW_HEALTHY, PipelineBoard, new_signer
from releases import release_id

# This firmware mounts its filesystem as the port's _boot does but cannot reach /lib: `import ota` fails.
BOOT_WITHOUT_LIB = ("import sys, vfs\nfrom flashbdev import bdev\nvfs.mount(bdev, '/')\n"
                    "sys.path[:] = [p for p in sys.path if p != '/lib']\n")


def frozen_ota():
    """The package as frozen modules (what `package("ota", base_path="lib")` freezes)."""
    return {"ota." + src.stem: src.read_text() for src in sorted((LIB / "ota").glob("*.py"))}


def test_release_that_cannot_import_ota_rolls_back_by_itself(sim_device, tmp_path):
    signer = new_signer(tmp_path)
    board = PipelineBoard(sim_device, signer)
    blob, image = signer.release("2.0.0", {"fw": FW_HEALTHY, "_boot": BOOT_WITHOUT_LIB}, counter=2, size=64 * 1024)
    board.stage(blob, image)
    board.device.run(timeout=60)
    boots = board.device.boot_log()
    assert [b["version"] for b in boots][:3] == ["1.0.0", "2.0.0", "1.0.0"]
    assert boots[1]["state"] == "PENDING_VERIFY" and boots[2]["cause"] == "WDT_RESET"
    assert "no module named 'ota'" in board.device.console
    assert "ota: the package cannot run on this firmware; the watchdog rolls it back" in board.device.console
    rolled = [f for k, f in board.events() if k == "rolled_back"]
    assert rolled == [{"release": release_id(blob), "target": "2.0.0", "version": "1.0.0", "reason": "watchdog"}]


def test_release_with_ota_frozen_in_keeps_updating_without_the_filesystem_copy(sim_device, tmp_path):
    signer = new_signer(tmp_path)
    board = PipelineBoard(sim_device, signer, heapsize="600K")  # frozen source compiles on import here
    modules = dict(frozen_ota(), fw=FW_HEALTHY)
    blob2, image2 = signer.release("2.0.0", modules, counter=2, size=256 * 1024)
    board.stage(blob2, image2)
    board.device.run(timeout=90)
    assert board.device.boot_log()[-1]["version"] == "2.0.0"
    assert ("confirmed", release_id(blob2)) in [(k, f.get("release")) for k, f in board.events()]

    board.device.remove_path("lib/ota")  # the filesystem copy is gone
    blob3, image3 = signer.release("3.0.0", modules, counter=3, size=256 * 1024)
    board.stage(blob3, image3)
    start = len(board.device.console)
    board.device.run(timeout=90)
    assert [b["version"] for b in board.device.boot_log()][-1] == "3.0.0"
    later = board.events(board.device.console[start:])
    confirmed = [f for k, f in later if k == "confirmed"]
    assert confirmed and confirmed[-1]["release"] == release_id(blob3) and confirmed[-1]["version"] == "3.0.0"
