"""End to end over a real mosquitto with TLS: the project's boot.py and main.py on simulated
boards, `mpota publish` on the host. The release travels main.py → ota.service → MQTT → slot →
trial boot → confirm, and the retained state says so."""
import pytest

from e2e_env import Fleet
from pipeline_env import FW_HEALTHY, FW_UNHEALTHY
from releases import SLOT_SIZE, release_id


@pytest.fixture
def fleet(tmp_path, mosquitto, sim_device):
    return Fleet(tmp_path, mosquitto(tls=True, persistence=True), sim_device)


def confirmed(device, version):
    return lambda states: (states.get(device) or {}).get("version") == version and states[device].get("state") == "idle"


def test_full_slot_image_installs_reboots_reconnects_confirms(fleet):
    board = fleet.board("dev-1")
    board.start()
    fleet.wait_state(lambda s: "dev-1" in s and s["dev-1"].get("version") == "1.0.0")
    blob, image = fleet.signer.release("2.0.0", {"fw": FW_HEALTHY}, counter=2, size=SLOT_SIZE)
    assert fleet.publish(blob, image).returncode == 0
    states = fleet.wait_state(confirmed("dev-1", "2.0.0"), timeout=240)
    assert states["dev-1"]["online"] is True and states["dev-1"]["release"] == release_id(blob)
    assert states["dev-1"]["slot"] == "ota_1"
    assert board.read_partition("ota_1") == image
    versions = [b["version"] for b in board.boot_log()]
    assert versions[:2] == ["1.0.0", "2.0.0"] and board.boot_log()[1]["state"] == "PENDING_VERIFY"
    assert not fleet.broker.dropped_lines()


def test_device_that_joins_after_the_publisher_exited_still_updates(fleet):
    blob, image = fleet.signer.release("2.0.0", {"fw": FW_HEALTHY}, counter=2, size=64 * 1024)
    assert fleet.publish(blob, image).returncode == 0  # the publisher is gone when the board boots
    fleet.board("late").start()
    fleet.wait_state(confirmed("late", "2.0.0"))


def test_release_that_fails_its_health_check_rolls_back_and_is_reported(fleet):
    board = fleet.board("dev-2", app="mqtt_app.py")
    board.start()
    blob, image = fleet.signer.release("2.0.0", {"fw": FW_UNHEALTHY}, counter=2, size=64 * 1024)
    assert fleet.publish(blob, image).returncode == 0
    states = fleet.wait_state(lambda s: (s.get("dev-2") or {}).get("reason") == "health_check_failed")
    assert states["dev-2"]["version"] == "1.0.0" and states["dev-2"]["slot"] == "ota_0"
    assert [b["version"] for b in board.boot_log()][:3] == ["1.0.0", "2.0.0", "1.0.0"]


def chunk_sends(log, device, release):
    """How many chunk messages of `release` the broker sent to `device`, from its log."""
    marker = "Sending PUBLISH to %s " % device
    return sum(1 for line in log.splitlines() if marker in line and "'ota/fw/%s/" % release in line)


def downloading(device, at_least):
    return lambda s: (s.get(device) or {}).get("state") == "downloading" and s[device].get("progress", 0) >= at_least


def test_broker_restart_and_device_power_cut_mid_transfer_resume(fleet):
    board = fleet.board("dev-3")
    board.start()
    blob, image = fleet.signer.release("2.0.0", {"fw": FW_HEALTHY}, counter=2, size=SLOT_SIZE)
    rid = release_id(blob)
    chunks = len(image) // 4096
    assert fleet.publish(blob, image).returncode == 0
    fleet.wait_state(downloading("dev-3", 20), timeout=120)
    fleet.broker.restart(pause=0.3)  # persistence keeps the retained release
    fleet.wait_state(downloading("dev-3", 50), timeout=120)
    board.power_cut()
    board.start()
    fleet.wait_state(confirmed("dev-3", "2.0.0"), timeout=240)
    assert board.read_partition("ota_1") == image
    log = fleet.broker.log_text()
    sent = chunk_sends(log, "dev-3", rid)
    # Each interruption costs at most the window in flight and the chunks since the last saved
    # progress record: nothing near a second full download.
    assert chunks <= sent <= chunks + 2 * (4 + 8) + 8, "%d chunk messages for %d chunks" % (sent, chunks)
    assert not fleet.broker.dropped_lines()
