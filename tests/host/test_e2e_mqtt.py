"""End to end over real brokers: the project's boot.py and main.py on simulated boards,
`mpota publish` on the host. The release travels main.py → ota.service → MQTT → slot → trial
boot → confirm, and the retained state says so.

Each test runs against mosquitto with TLS, and against RabbitMQ's MQTT plugin with TLS and
without: the protocol must not depend on one broker's ways. RabbitMQ runs with a smaller image
(its node is shared by the session; each test has its own topic root)."""
import re
import zlib

import pytest

from e2e_env import Fleet
from pipeline_env import FW_HEALTHY, FW_UNHEALTHY
from releases import SLOT_SIZE, release_id
from mpunix import LIB

BROKERS = ["mosquitto-tls", "rabbitmq-tls", "rabbitmq-plain"]
WINDOW = int(re.search(r"^WINDOW = const\((\d+)\)", (LIB / "ota" / "transport.py").read_text(), re.M).group(1))


@pytest.fixture(params=BROKERS)
def fleet(request, tmp_path, sim_device):
    kind, mode = request.param.split("-")
    if kind == "mosquitto":
        fleet = Fleet(tmp_path, request.getfixturevalue("mosquitto")(tls=True, persistence=True), sim_device)
        fleet.image_size = SLOT_SIZE
    else:
        root = "t%08x" % zlib.crc32(request.node.nodeid.encode())
        fleet = Fleet(tmp_path, request.getfixturevalue("rabbitmq")(tls=mode == "tls"), sim_device, root=root)
        fleet.image_size = 256 * 1024
    return fleet


def confirmed(device, version):
    return lambda states: (states.get(device) or {}).get("version") == version and states[device].get("state") == "idle"


def test_full_slot_image_installs_reboots_reconnects_confirms(fleet):
    board = fleet.board("dev-1")
    board.start()
    fleet.wait_state(lambda s: "dev-1" in s and s["dev-1"].get("version") == "1.0.0")
    blob, image = fleet.signer.release("2.0.0", {"fw": FW_HEALTHY}, counter=2, size=fleet.image_size)
    assert fleet.publish(blob, image).returncode == 0
    states = fleet.wait_state(confirmed("dev-1", "2.0.0"), timeout=240)
    assert states["dev-1"]["online"] is True and states["dev-1"]["release"] == release_id(blob)
    assert states["dev-1"]["slot"] == "ota_1"
    assert board.read_partition("ota_1")[:len(image)] == image
    versions = [b["version"] for b in board.boot_log()]
    assert versions[:2] == ["1.0.0", "2.0.0"] and board.boot_log()[1]["state"] == "PENDING_VERIFY"
    assert not fleet.broker.dropped_lines()


def test_a_board_with_the_package_in_romfs_updates_and_confirms(fleet):
    """The package deployed in a ROMFS partition (bytecode run in place from flash) takes the
    same path: the service imports it from /rom/lib and installs, boots and confirms."""
    board = fleet.board("rom-1", romfs=True)
    board.start()
    blob, image = fleet.signer.release("2.0.0", {"fw": FW_HEALTHY}, counter=2, size=128 * 1024)
    assert fleet.publish(blob, image).returncode == 0
    fleet.wait_state(confirmed("rom-1", "2.0.0"))
    assert board.read_partition("ota_1")[:len(image)] == image
    board.power_cut()
    assert "lib" not in board.listdir("/")  # nothing of the package on the filesystem: it ran from /rom


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
    # state idle: the rolled-back board's report, not the trial's last one before its reset
    states = fleet.wait_state(lambda s: (s.get("dev-2") or {}).get("reason") == "health_check_failed"
                              and s["dev-2"].get("state") == "idle")
    assert states["dev-2"]["version"] == "1.0.0" and states["dev-2"]["slot"] == "ota_0"
    assert [b["version"] for b in board.boot_log()][:3] == ["1.0.0", "2.0.0", "1.0.0"]


def downloading(device, at_least):
    return lambda s: (s.get(device) or {}).get("state") == "downloading" and s[device].get("progress", 0) >= at_least


def test_broker_restart_and_device_power_cut_mid_transfer_resume(fleet, tcp_proxy):
    # The board's link goes through a relay that counts what the broker sends it (any broker)
    # and paces it, so that the interruptions land mid-transfer however fast the device is.
    blob, image = fleet.signer.release("2.0.0", {"fw": FW_HEALTHY}, counter=2, size=fleet.image_size)
    chunks = len(image) // 4096
    relay = tcp_proxy(fleet.broker.port, rate=len(image) / 8)
    board = fleet.board("dev-3", port=relay.port)
    board.start()
    fleet.wait_state(lambda s: (s.get("dev-3") or {}).get("version") == "1.0.0")
    assert fleet.publish(blob, image).returncode == 0
    fleet.wait_state(downloading("dev-3", 20), timeout=120)
    fleet.broker.restart(pause=0.3)  # the broker keeps the retained release on disk
    fleet.wait_state(downloading("dev-3", 50), timeout=120)
    board.power_cut()
    board.start()
    fleet.wait_state(confirmed("dev-3", "2.0.0"), timeout=240)
    assert board.read_partition("ota_1")[:len(image)] == image
    # Each interruption costs at most the window in flight and the chunks since the last saved
    # progress record: nothing near a second full download. Per chunk, MQTT and TLS framing
    # add well under 256 bytes; manifests, acks and handshakes of a few connections well under
    # 64 KiB.
    resent = 2 * (WINDOW + 16) + 8  # a progress record every 64 KiB: 16 chunks
    assert relay.down <= (chunks + resent) * (4096 + 256) + 64 * 1024, "%d bytes for %d" % (relay.down, len(image))
    assert not fleet.broker.dropped_lines()
