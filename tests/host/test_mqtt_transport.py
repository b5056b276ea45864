"""The device side of docs/PROTOCOL.md against a real mosquitto: a simulated device (real client
and transport on the unix port, a stand-in sink for the updater) fetches releases that a
publisher that has since exited left on the broker."""
import json
import os
import time

from plugin_broker import make_release
from tools import broker as hostbroker
from tools.cmd_publish import publish_release


def publish(mq, blob, image, targets):
    with hostbroker.Connection(mq.host, mq.port) as conn:
        return publish_release(conn, blob, image, targets)


def retained(mq, topics):
    with hostbroker.Connection(mq.host, mq.port) as conn:
        return conn.retained(topics, want=topics)


def chunk_sends(log, device, release):
    """How many chunk messages of `release` the broker sent to `device`, from its log."""
    marker = "Sending PUBLISH to %s " % device
    return sum(1 for line in log.splitlines() if marker in line and "'ota/fw/%s/" % release in line)


def test_device_joining_after_the_publisher_left_fetches_every_chunk_once(mosquitto, ota_device, tmp_path):
    mq = mosquitto()
    image = os.urandom(100_000)
    blob = make_release(image, chunk_size=2048)
    rid = publish(mq, blob, image, ["ota/manifest/esp32-generic"])
    data = tmp_path / "slot.bin"
    rc, out, err = ota_device({"port": mq.port, "device": "dev-1", "fleet": "esp32-generic", "data": str(data)}).wait()
    assert rc == 0, out + err
    assert out.startswith("COMPLETE %s 1.0.0" % rid), out
    assert data.read_bytes() == image
    assert chunk_sends(mq.log_text(), "dev-1", rid) == 49
    state = json.loads(retained(mq, ["ota/status/dev-1/state"])["ota/status/dev-1/state"])
    assert state["device"] == "dev-1" and state["release"] == rid and state["progress"] == 100
    assert retained(mq, ["ota/status/dev-1/online"])["ota/status/dev-1/online"] == b"0"
    assert not mq.dropped_lines()
