"""The device side of docs/PROTOCOL.md against a real mosquitto: a simulated device (real client
and transport on the unix port, a stand-in sink for the updater) fetches releases that a
publisher that has since exited left on the broker."""
import json
import os
import time

from plugin_broker import make_release
from mpota import broker as hostbroker
from mpota.cmd_publish import publish_release


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


def received_chunks(data):
    """Chunks the device has written so far, from the stand-in sink's bitmap file."""
    try:
        raw = (data.parent / (data.name + ".map")).read_bytes()
    except FileNotFoundError:
        return 0
    return sum(bin(b).count("1") for b in raw[16:])


def wait_for_chunks(data, n, run, timeout=60):
    deadline = time.monotonic() + timeout
    while received_chunks(data) < n:
        assert run.proc.poll() is None, run.wait()
        assert time.monotonic() < deadline, "device made no progress"
        time.sleep(0.01)


def max_outstanding(log, device):
    """Largest number of chunk messages the broker had sent to `device` and not yet seen acked."""
    out, peak = set(), 0
    for line in log.splitlines():
        if ("Sending PUBLISH to %s " % device) in line and "'ota/fw/" in line:
            out.add(line.split(", m")[1].split(",")[0])
            peak = max(peak, len(out))
        elif ("Received PUBACK from %s " % device) in line:
            out.discard(line.split("Mid: ")[1].split(",")[0])
    return peak


def test_targeting_device_beats_group_beats_fleet(mosquitto, ota_device, tmp_path):
    mq = mosquitto()
    images = [os.urandom(3000) for _ in range(3)]
    blobs = [make_release(im, version="1.0.%d" % i, chunk_size=1024) for i, im in enumerate(images)]
    fleet = publish(mq, blobs[0], images[0], ["ota/manifest/esp32-generic"])
    group = publish(mq, blobs[1], images[1], ["ota/manifest/esp32-generic/group/canary"])
    pinned = publish(mq, blobs[2], images[2], ["ota/manifest/esp32-generic/device/dev-a"])
    cases = {"dev-a": ("canary", pinned, 2), "dev-b": ("canary", group, 1), "dev-c": (None, fleet, 0)}
    runs = {d: ota_device({"port": mq.port, "device": d, "fleet": "esp32-generic", "group": g,
                           "data": str(tmp_path / d)}) for d, (g, _, _) in cases.items()}
    for device, (_, release, which) in cases.items():
        rc, out, err = runs[device].wait()
        assert rc == 0 and out.startswith("COMPLETE %s" % release), out + err
        assert (tmp_path / device).read_bytes() == images[which]
        assert chunk_sends(mq.log_text(), device, release) == 3


def test_power_cut_resumes_without_fetching_from_zero(mosquitto, ota_device, tmp_path):
    mq = mosquitto()
    image = os.urandom(200 * 1024)
    blob = make_release(image, chunk_size=1024)
    rid = publish(mq, blob, image, ["ota/manifest/esp32-generic"])
    data = tmp_path / "slot.bin"
    cfg = {"port": mq.port, "device": "dev-1", "fleet": "esp32-generic", "data": str(data)}
    rc, out, err = ota_device(dict(cfg, die_after=60)).wait()
    assert rc == 9, out + err  # the power cut, mid-download
    assert received_chunks(data) == 60
    assert retained(mq, ["ota/status/dev-1/online"])["ota/status/dev-1/online"] == b"0"  # last will
    before = chunk_sends(mq.log_text(), "dev-1", rid)
    rc, out, err = ota_device(cfg).wait()
    assert rc == 0 and out.startswith("COMPLETE " + rid), out + err
    assert data.read_bytes() == image
    again = chunk_sends(mq.log_text(), "dev-1", rid) - before
    assert again <= 140 + 4, "fetched %d chunks after the cut, expected the 140 missing" % again


def test_broker_restart_mid_transfer_resumes(mosquitto, ota_device, tmp_path):
    mq = mosquitto(persistence=True)
    image = os.urandom(240 * 1024)
    blob = make_release(image, chunk_size=1024)
    rid = publish(mq, blob, image, ["ota/manifest/esp32-generic"])
    data = tmp_path / "slot.bin"
    run = ota_device({"port": mq.port, "device": "dev-1", "fleet": "esp32-generic", "data": str(data), "delay_ms": 5})
    wait_for_chunks(data, 80, run)
    mq.restart(pause=0.5)
    rc, out, err = run.wait()
    assert rc == 0 and out.startswith("COMPLETE " + rid), out + err
    assert data.read_bytes() == image
    log = mq.log_text()
    after = log[log.rindex(" starting"):]  # the log of the restarted broker
    resent = chunk_sends(after, "dev-1", rid)
    assert 0 < resent <= 240 - 80 + 4, resent


def test_dropped_link_resumes(mosquitto, ota_device, tcp_proxy, tmp_path):
    mq = mosquitto()
    image = os.urandom(240 * 1024)
    blob = make_release(image, chunk_size=1024)
    rid = publish(mq, blob, image, ["ota/manifest/esp32-generic"])
    proxy = tcp_proxy(mq.port)
    data = tmp_path / "slot.bin"
    run = ota_device({"port": proxy.port, "device": "dev-1", "fleet": "esp32-generic", "data": str(data),
                      "delay_ms": 5, "keepalive": 5})
    wait_for_chunks(data, 80, run)
    assert proxy.drop() == 1
    rc, out, err = run.wait()
    assert rc == 0 and out.startswith("COMPLETE " + rid), out + err
    assert data.read_bytes() == image
    log = mq.log_text()
    assert log.count("New client connected from 127.0.0.1") >= 3  # publisher, device, device again
    assert chunk_sends(log, "dev-1", rid) <= 240 + 16  # again at most the window the drop caught in flight


def test_newer_manifest_supersedes_mid_download(mosquitto, ota_device, tmp_path):
    mq = mosquitto()
    old, new = os.urandom(200 * 1024), os.urandom(50 * 1024)
    old_id = publish(mq, make_release(old, counter=1, chunk_size=1024), old, ["ota/manifest/esp32-generic"])
    data = tmp_path / "slot.bin"
    run = ota_device({"port": mq.port, "device": "dev-1", "fleet": "esp32-generic", "data": str(data), "delay_ms": 5})
    wait_for_chunks(data, 40, run)
    new_id = publish(mq, make_release(new, version="2.0.0", counter=2, chunk_size=1024), new,
                     ["ota/manifest/esp32-generic"])
    rc, out, err = run.wait()
    assert rc == 0 and out.startswith("COMPLETE %s 2.0.0" % new_id), out + err
    assert data.read_bytes() == new
    log = mq.log_text()
    assert chunk_sends(log, "dev-1", old_id) < 200
    assert chunk_sends(log, "dev-1", new_id) == 50


def test_one_and_a_half_mib_with_stock_broker_limits_drops_nothing(mosquitto, ota_device, tmp_path):
    mq = mosquitto()  # mosquitto's defaults: 20 in flight, 1000 queued per client
    image = os.urandom(1536 * 1024)
    blob = make_release(image, chunk_size=4096)
    rid = publish(mq, blob, image, ["ota/manifest/esp32-generic"])
    data = tmp_path / "slot.bin"
    start = time.monotonic()
    # 60K: a new name in the device modules can cost a whole new qstr pool (they double in size)
    rc, out, err = ota_device({"port": mq.port, "device": "dev-1", "fleet": "esp32-generic", "data": str(data)},
                              heapsize="60K").wait()
    elapsed = time.monotonic() - start
    assert rc == 0 and out.startswith("COMPLETE " + rid), out + err
    assert data.read_bytes() == image
    log = mq.log_text()
    assert not mq.dropped_lines()
    assert chunk_sends(log, "dev-1", rid) == 384  # every chunk exactly once
    assert max_outstanding(log, "dev-1") <= 16  # the window: all the broker ever held for the device
    print("1.5 MiB in %.1f s; device heap free at the end: %s bytes of 60K" % (elapsed, out.split()[-1]))


def test_disruption_campaign(mosquitto, ota_device, tcp_proxy, tmp_path):
    """Link drops and broker restarts, alternating, during one download: it still completes and
    fetches little more than the image. OTA_SOAK=1: a 1.5 MiB image and 20 disruptions."""
    soak = os.environ.get("OTA_SOAK") == "1"
    chunks, disruptions = (384, 20) if soak else (160, 4)
    mq = mosquitto(persistence=True)
    image = os.urandom(chunks * 4096)
    rid = publish(mq, make_release(image, chunk_size=4096), image, ["ota/manifest/esp32-generic"])
    proxy = tcp_proxy(mq.port)
    data = tmp_path / "slot.bin"
    run = ota_device({"port": proxy.port, "device": "dev-1", "fleet": "esp32-generic", "data": str(data),
                      "delay_ms": 5, "keepalive": 5, "limit_ms": 600000})
    sends = 0
    for n in range(disruptions):
        wait_for_chunks(data, chunks * (n + 1) // (disruptions + 1), run)
        if n % 2:
            log = mq.log_text()
            sends += chunk_sends(log, "dev-1", rid)
            mq.restart(pause=0.2)
            mq.log_path.write_text("")  # count each broker life's sends once
        else:
            proxy.drop()
    rc, out, err = run.wait(timeout=600)
    assert rc == 0 and out.startswith("COMPLETE " + rid), out + err
    assert data.read_bytes() == image
    sends += chunk_sends(mq.log_text(), "dev-1", rid)
    assert sends <= chunks + 4 * disruptions, "%d chunk messages for %d chunks" % (sends, chunks)
    assert not mq.dropped_lines()


SIMPLE_MAIN = r'''
import json, os, time
cfg = json.loads(os.getenv("OTA_DEVICE_CFG"))
from ota.mqtt import MQTTClient
from ota.transport import Transport
from sink import Sink


class Simple:
    """Only the umqtt.simple surface: each call waits, nothing is pipelined."""

    def __init__(self, client):
        self.c = client

    def __getattr__(self, name):
        if name in ("connect", "wait_msg", "check_msg", "publish", "subscribe", "unsubscribe", "close",
                    "disconnect", "set_callback", "set_last_will"):
            return getattr(self.c, name)
        raise AttributeError(name)


sink = Sink(cfg["data"])
t = Transport(Simple(MQTTClient(cfg["device"], "127.0.0.1", cfg["port"], timeout=5)), sink, cfg["device"], cfg["fleet"])
while not t.poll(100):
    pass
print("COMPLETE", sink.m.id, t.pipe)
t.stop()
'''


def test_poll_drives_a_client_with_only_the_umqtt_surface(mosquitto, mp, device_lib, ota_device, tmp_path):
    mq = mosquitto()
    image = os.urandom(30 * 1024)
    rid = publish(mq, make_release(image, chunk_size=1024), image, ["ota/manifest/esp32-generic"])
    data = tmp_path / "slot.bin"
    cfg = {"port": mq.port, "device": "dev-s", "fleet": "esp32-generic", "data": str(data)}
    out = mp(SIMPLE_MAIN, path=(device_lib, ota_device.home), env={"OTA_DEVICE_CFG": json.dumps(cfg)}, timeout=120)
    assert out.stdout.split() == ["COMPLETE", rid, "False"]
    assert data.read_bytes() == image
    assert chunk_sends(mq.log_text(), "dev-s", rid) == 30
