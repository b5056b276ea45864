"""Wi-Fi on a simulated board against a real mosquitto: the project's boot.py and main.py bring the
station up from ota_config.json (ota.net), through an access point the test controls
(tests/host/wifi_env.py). The board's socket layer refuses while its station has no link, and
the AP carries nothing while it is off the air, so the board's MQTT connection really fails."""
import json
import queue
import time

import pytest

from e2e_env import Fleet
from pipeline_env import FW_HEALTHY
from releases import release_id
from test_e2e_mqtt import confirmed, downloading
from wifi_env import AccessPoint

# Short attempts and pauses stand in for the defaults (20 s, up to 60 s): an outage of a few
# seconds here is as many failed attempts as minutes are on a board with the defaults.
WINDOW, SAVE_EVERY, TABLE = 16, 16, 2  # largest chunk window, 4 KiB chunks per progress save (64 KiB), table messages


def chunk_sends(log, device, release):
    """How many chunk (and digest-table) messages of `release` the broker sent to `device`, from its log."""
    marker = "Sending PUBLISH to %s " % device
    return sum(1 for line in log.splitlines() if marker in line and "'ota/fw/%s/" % release in line)


WIFI = {"ssid": "home", "password": "correct horse", "connect_timeout_s": 0.5, "retry_max_s": 0.3,
        "hostname": "sensor", "country": "DE"}


@pytest.fixture
def fleet(tmp_path, mosquitto, sim_device):
    return Fleet(tmp_path, mosquitto(tls=True, persistence=True), sim_device)


@pytest.fixture
def access_points():
    made = []
    yield made
    for ap in made:
        ap.close()


def wifi_board(fleet, access_points, device_id, extra=None, wifi=None, **ap_state):
    """A board whose broker is reached only through its Wi-Fi access point; `wifi` changes
    the board's Wi-Fi settings."""
    board = fleet.board(device_id, extra=extra)
    ap = AccessPoint(board.flash, fleet.broker.port, **ap_state)
    access_points.append(ap)
    path = board.fs / "ota_config.json"
    cfg = json.loads(path.read_text())
    cfg["broker"]["port"] = ap.port
    cfg["wifi"] = dict(WIFI, **(wifi or {}))
    path.write_text(json.dumps(cfg))
    return board, ap


class Events:
    """The device's status events, as the broker delivers them to a subscriber."""

    def __init__(self, fleet, device):
        self.conn = fleet.connection().__enter__()
        self.conn.client.subscribe("ota/status/%s/event" % device, 1)
        self.seen = []

    def wait_for(self, predicate, timeout=60):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                msg = self.conn.messages.get(timeout=0.2)
            except queue.Empty:
                continue
            self.seen.append(json.loads(msg.payload))
            if predicate(self.seen[-1]):
                return self.seen
        raise AssertionError("no such event; seen: %r" % self.seen)

    def close(self):
        self.conn.close()


def link_up(event):
    return event.get("kind") == "link" and event.get("link") == "up"


def online(device):
    return lambda s: (s.get(device) or {}).get("online") is True and s[device].get("version") == "1.0.0"


def test_no_network_at_boot_then_a_wrong_password_then_online(fleet, access_points):
    board, ap = wifi_board(fleet, access_points, "w-1", up=False)
    events = Events(fleet, "w-1")
    try:
        board.start()
        ap.wait_requests(3)  # no AP on the air: the station searches, gives up, pauses, asks again
        ap.set(up=True, password="changed by the owner")
        ap.wait_requests(3)  # an AP that refuses the board's password
        assert ap.accepted == 0, "a connection got through without a link"
        ap.set(password="correct horse")
        fleet.wait_state(online("w-1"))
        seen = events.wait_for(link_up)
    finally:
        events.close()
    downs = [e.get("status") for e in seen if e.get("kind") == "link" and e.get("link") == "down"]
    assert 201 in downs and 202 in downs, seen  # STAT_NO_AP_FOUND, then STAT_WRONG_PASSWORD
    assert downs.index(201) < downs.index(202)
    assert seen[-1]["attempts"] >= 6 and "password" not in json.dumps(seen)
    assert ap.accepted >= 1


def test_ap_that_drops_mid_download_for_long_comes_back_and_the_download_resumes(fleet, access_points):
    # The pause between attempts doubles from 1 s up to its cap, here 1.5 s (a board's default:
    # 60 s); the outage lasts 6 attempts, 4 of them after a pause at the cap: several times the
    # cap, as an outage of minutes is on a board with the defaults.
    board, ap = wifi_board(fleet, access_points, "w-2", wifi={"retry_max_s": 1.5})
    board.start()
    fleet.wait_state(online("w-2"))
    blob, image = fleet.signer.release("2.0.0", {"fw": FW_HEALTHY}, counter=2, size=512 * 1024)
    events = Events(fleet, "w-2")
    ap.go_off_after(200 * 1024)  # mid-download
    assert fleet.publish(blob, image).returncode == 0
    try:
        fleet.wait_state(downloading("w-2", 1), timeout=120)
        while ap.state["up"]:
            time.sleep(0.05)
        ap.wait_requests(6)  # a long outage: many attempts, the later ones after the longest pause
        ap.set(up=True)
        seen = events.wait_for(link_up)
        states = fleet.wait_state(confirmed("w-2", "2.0.0"), timeout=240)
    finally:
        events.close()
    assert seen[-1]["attempts"] >= 6  # it kept asking for the AP all along, at the capped pause
    assert states["w-2"]["release"] == release_id(blob)
    assert board.read_partition("ota_1")[:len(image)] == image
    chunks = len(image) // 4096
    sent = chunk_sends(fleet.broker.log_text(), "w-2", release_id(blob))
    # at most a window in flight and the chunks since the last progress save again per outage
    assert chunks + TABLE <= sent <= chunks + TABLE + 2 * (WINDOW + SAVE_EVERY) + 8, "%d messages for %d chunks" % (sent, chunks)


def test_trial_boot_that_cannot_reach_the_ap_rolls_back(fleet, access_points):
    board, ap = wifi_board(fleet, access_points, "w-3", extra={"confirm_within_ms": 6000})
    board.start()
    fleet.wait_state(online("w-3"))
    # The station in the air stays connected; a new association would take ten minutes.
    ap.set(delay_ms=600_000)
    blob, image = fleet.signer.release("2.0.0", {"fw": FW_HEALTHY}, counter=2, size=64 * 1024)
    assert fleet.publish(blob, image).returncode == 0
    board.wait_for(r"^\[sim\] boot 3 slot=ota_0", timeout=120)  # the trial gave up, the old image is back
    ap.set(delay_ms=0)
    states = fleet.wait_state(lambda s: (s.get("w-3") or {}).get("reason") == "confirm_timeout", timeout=120)
    assert states["w-3"]["version"] == "1.0.0" and states["w-3"]["slot"] == "ota_0"
    boots = board.boot_log()
    assert [b["version"] for b in boots[:3]] == ["1.0.0", "2.0.0", "1.0.0"]
    assert boots[1]["state"] == "PENDING_VERIFY"
