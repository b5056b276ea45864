"""A trial that cannot reach the broker failed for the network's sake, not the firmware's: the
release rolls back (the trial must still end), is installed again a bounded number of times
(`outcome.UNREACHABLE_TRIES`), and only then is it given up. The simulated board runs the project's
boot.py with the pipeline test app (tests/host/apps/local_update.py); the new firmware reports,
as `ota.service` does, that its broker is out of reach."""
import re

import pytest

from mpunix import LIB
from pipeline_env import PipelineBoard, new_signer
from releases import release_id

TRIES = int(re.search(r"^UNREACHABLE_TRIES = (\d+)", (LIB / "ota" / "outcome.py").read_text(), re.M).group(1))

FW_OFFLINE = ("from ota import trial\n\ndef start():\n    pass\n\n"
              "def healthy():\n    trial.link(False)  # the service never got its broker\n    return None\n")


@pytest.fixture
def signer(tmp_path):
    return new_signer(tmp_path)


def test_a_trial_that_never_reaches_the_broker_is_retried_then_given_up(sim_device, signer):
    board = PipelineBoard(sim_device, signer, wdt_ms=1000, confirm_within_ms=1500)
    blob, image = signer.release("2.0.0", {"fw": FW_OFFLINE}, counter=2, size=32 * 1024)
    board.stage(blob, image)
    board.device.run(timeout=120, max_boots=2 * TRIES + 4)
    versions = [b["version"] for b in board.device.boot_log()]
    assert versions == ["1.0.0", "2.0.0"] * TRIES + ["1.0.0"]
    rolled = [f for k, f in board.events() if k == "rolled_back"]
    assert [f["reason"] for f in rolled] == ["unreachable"] * TRIES
    assert {f["release"] for f in rolled} == {release_id(blob)}
    # after the last try the release is failed for good: the old firmware runs on, idle
    assert board.kinds().count("installing") == TRIES and "confirmed" not in board.kinds()
