"""An app bundle installed on the board and confirmed, as on a board in the field: the board is
set up for bundles through mpremote (the project's boot.py, the launcher as main.py, a first
bundle in apps/a, a trust file), a signed release is put where the test application picks it up,
and the board is reset; it downloads it into the inactive folder, resets into the trial,
confirms, and runs the new bundle from then on. Runs on ESP32 and rp2 (needs --allow-reboot);
everything it copied is removed again."""
import time

import pytest

from pipeline_env import FW_HEALTHY
from rp2_env import BundleSigner, bundle_board_files, staged
from mpota import signing

WDT_MS = 3000  # armed on the trial boot; it resets the board once after the test application ends
SETTLE_S = 25  # a real board: download, install, trial boot, confirmation, the one watchdog reset
ROOT_FILES = ("boot.py", "main.py", "app.json", "ota_config.json")


def _copy(board, files, tmp_path):
    """Each file onto the board through mpremote, folders made first."""
    local = tmp_path / "put"
    folders = sorted({name.rsplit("/", 1)[0] for name in files if "/" in name}, key=len)
    board.mpremote("exec", "import os\nfor d in %r:\n try:\n  os.mkdir(d)\n except OSError:\n  pass" % (
        [p for f in folders for p in ["/".join(f.split("/")[:i + 1]) for i in range(f.count("/") + 1)]],))
    for name, data in files.items():
        path = local / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        board.put(path, name)


def _wait_settled(board, boots):
    """Wait without touching the REPL (mpremote's Ctrl-C would stop the application)."""
    if board.virtual:
        board.virtual.wait_boots(boots, timeout=120)
        time.sleep(WDT_MS / 1000 + 2)  # the trial boot's watchdog, once the application ended
        board.virtual.wait_boots(boots + 1, timeout=120)
    else:
        time.sleep(SETTLE_S)


@pytest.mark.reboot
def test_bundle_installed_through_a_trial_and_confirmed(deployed, tmp_path):
    board = deployed
    signer = BundleSigner(tmp_path / "keys")
    first = signer.bundle("1.0.0", FW_HEALTHY, counter=1, board=board.name)
    blob, data = signer.bundle("2.0.0", FW_HEALTHY, counter=2, board=board.name, extra={"lib/util.py": "X = 2\n"})
    files = bundle_board_files(signer, first, board=board.name, wdt_ms=WDT_MS, confirm_within_ms=20000)
    files.update(staged("release", blob, data))
    try:
        _copy(board, files, tmp_path)
        before = len(board.virtual.boot_log()) if board.virtual else 0
        board.mpremote("reset")
        _wait_settled(board, before + 2)  # the reset, then the trial boot
        result = board.run("bundle_record")
        assert (result["active"], result["release"], result["trial"]) == ("b", signing.manifest_id(blob), None), result
        assert result["running"] == "2.0.0", result  # the new bundle is what runs now
    finally:
        board.mpremote("exec", "import os\n"
                       "def rm(p):\n try:\n  for n in os.listdir(p):\n   rm(p + '/' + n)\n  os.rmdir(p)\n"
                       " except OSError:\n  try:\n   os.remove(p)\n  except OSError:\n   pass\n"
                       "for p in %r:\n rm(p)" % (ROOT_FILES + ("apps", ".ota", "release"),), check=False)
        board.mpremote("reset", check=False)
        time.sleep(1)
