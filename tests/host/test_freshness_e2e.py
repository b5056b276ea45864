"""Freshness end to end: the project's main.py on simulated boards, a real mosquitto, the real
`mpota publish`. A freeze (an old signed release pinned at device level while a newer one is
offered fleet-wide) is defeated, and a release that expired long ago is never installed."""
import time

import pytest

from e2e_env import Fleet
from pipeline_env import FW_HEALTHY
from mpota import signing


@pytest.fixture
def fleet(tmp_path, mosquitto, sim_device):
    return Fleet(tmp_path, mosquitto(), sim_device)


def test_freeze_attack_a_stale_device_pin_gives_way_to_the_fleet_release(fleet):
    pem = fleet.signer.add_timestamp_key()
    board = fleet.board("dev-1")
    old_blob, old_image = fleet.signer.release("1.5.0", {"fw": FW_HEALTHY}, counter=1, size=64 * 1024)
    new_blob, new_image = fleet.signer.release("2.0.0", {"fw": FW_HEALTHY}, counter=2, size=64 * 1024)
    # Ten days ago the operator pinned dev-1 to 1.5.0; the attacker kept that message and writes it
    # back over the device's pin, chunks included, after the fleet moved on to 2.0.0.
    now = int(time.time())
    old_record = signing.build_timestamp(level="device", fleet=fleet.fleet, name="dev-1",
                                         release=signing.manifest_id(old_blob), counter=1, issued=now - 10 * 86400,
                                         expires=now - 9 * 86400, private_key=fleet.signer.stamp_key)
    assert fleet.publish(old_blob, old_image, "--no-target").returncode == 0
    assert fleet.publish(new_blob, new_image, "--timestamp-key", str(pem)).returncode == 0
    with fleet.connection() as conn:
        conn.wait([conn.publish("ota/manifest/%s/device/dev-1" % fleet.fleet, old_blob + old_record)])
    board.start()
    fleet.wait_state(lambda s: (s.get("dev-1") or {}).get("version") == "2.0.0" and s["dev-1"]["state"] == "idle",
                     timeout=180)
    assert "1.5.0" not in [b["version"] for b in board.boot_log()]


def test_a_release_without_its_timestamp_record_is_not_installed(fleet):
    fleet.signer.add_timestamp_key()
    board = fleet.board("dev-2")
    blob, image = fleet.signer.release("2.0.0", {"fw": FW_HEALTHY}, counter=2, size=64 * 1024)
    assert fleet.publish(blob, image).returncode == 0  # no --timestamp-key: no record
    board.start()
    states = fleet.wait_state(lambda s: (s.get("dev-2") or {}).get("reason") == "no_timestamp")
    assert states["dev-2"]["version"] == "1.0.0"


def test_a_release_that_expired_in_2001_is_refused_by_the_service(fleet):
    board = fleet.board("dev-3")
    blob, image = fleet.signer.release("2.0.0", {"fw": FW_HEALTHY}, counter=2, size=64 * 1024, expiry=978307200)
    assert fleet.publish(blob, image).returncode == 0
    board.start()
    states = fleet.wait_state(lambda s: (s.get("dev-3") or {}).get("reason") == "expired")
    assert states["dev-3"]["version"] == "1.0.0" and states["dev-3"]["slot"] == "ota_0"


def test_mpota_timestamp_refreshes_every_manifest_topic(tmp_path, mosquitto):
    """The timer job: every retained manifest topic gets a new record bound to its level and release."""
    import subprocess
    import sys

    from mpunix import ROOT
    from releases import Signer
    from mpota import broker as host_broker

    mq = mosquitto()
    signer = Signer(tmp_path / "keys")
    pem = signer.add_timestamp_key()
    blob, _ = signer.release_of(b"x" * 5000)
    topics = ["ota/manifest/plant", "ota/manifest/plant/group/canary", "ota/manifest/plant/device/dev-1"]
    with host_broker.Connection(mq.host, mq.port) as conn:
        conn.wait([conn.publish(t, blob) for t in topics])
    proc = subprocess.run([sys.executable, "-m", "mpota", "timestamp", "--timestamp-key", str(pem), "--timestamp-life",
                           "600", "--broker", "%s:%d" % (mq.host, mq.port), "--audit-dir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    with host_broker.Connection(mq.host, mq.port) as conn:
        stored = conn.retained(["ota/manifest/#"], settle=0.3)
    assert sorted(stored) == sorted(topics)
    for topic, message in stored.items():
        manifest, record = signing.split_message(message)
        assert manifest == blob
        level = signing.STAMP_HEADER.unpack_from(record)
        assert level[2] == ("fleet", "group", "device").index(topic.split("/")[3] if topic.count("/") > 2 else "fleet")
        assert level[7].hex() == signing.manifest_id(blob) and level[6] - level[5] == 600
    assert "timestamp" in (tmp_path / "audit.jsonl").read_text()
