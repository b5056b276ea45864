"""The device's client and transport (real code on the unix port) against a broker that
misbehaves (tests/host/hostile_broker.py): the application's `poll()` keeps coming back, a
failure right after CONNACK does not turn into a reconnect storm, a bad chunk does not turn into
a request per round, and a chunk topic means exactly what the publisher wrote.

Counts, not timings: each test counts polls, connections or subscriptions over a stretch of the
device's own clock, where the defect it guards against gives a count many times larger (or
hangs, which the run's timeout turns into a failure). The worst poll durations are printed for
the record (`pytest -s`)."""
import json

import pytest

from hostile_broker import HostileBroker
from plugin_broker import make_release
from releases import release_id

HOSTILE_MAIN = r"""
import json, os, time
cfg = json.loads(os.getenv("OTA_DEVICE_CFG"))
from ota.mqtt import MQTTClient, Backoff
from ota.transport import Transport
from sink import Sink
ctx = None
if cfg["tls"]:
    import tls
    ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = tls.CERT_NONE  # the handshake never gets as far as a certificate
client = MQTTClient(cfg["device"], "127.0.0.1", cfg["port"], keepalive=cfg["keepalive"], ssl=ctx, bufsize=4224,
                    timeout=2)
t = Transport(client, Sink(cfg["data"]), cfg["device"], "esp32-generic", backoff=Backoff(100, 60000))
end = time.ticks_add(time.ticks_ms(), cfg["run_ms"])
polls = worst = 0
while time.ticks_diff(end, time.ticks_ms()) > 0:
    start = time.ticks_ms()
    t.poll(cfg["budget_ms"])
    worst = max(worst, time.ticks_diff(time.ticks_ms(), start))
    polls += 1
print(json.dumps({"polls": polls, "worst_ms": worst}))
"""


@pytest.fixture
def hostile():
    brokers = []

    def start(mode, retained=None):
        brokers.append(HostileBroker(mode, retained))
        return brokers[-1]

    yield start
    for b in brokers:
        b.close()


def run_device(mp, device_lib, ota_device, tmp_path, broker, run_ms, budget_ms=100, keepalive=30, tls=False):
    cfg = {"port": broker.port, "device": "dev-h", "data": str(tmp_path / "slot.bin"), "run_ms": run_ms,
           "budget_ms": budget_ms, "keepalive": keepalive, "tls": tls}
    proc = mp(HOSTILE_MAIN, path=(device_lib, ota_device.home), heapsize="96K", env={"OTA_DEVICE_CFG": json.dumps(cfg)},
              timeout=run_ms / 1000 + 30)
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("mode", ["mute", "mute-tls", "dribble", "stall", "no_puback"])
def test_poll_comes_back_within_its_budget_whatever_the_broker_does(mode, hostile, mp, device_lib, ota_device,
                                                                     tmp_path):
    # 4 s of poll(100): a client that waits for a CONNACK, a TLS handshake, a whole packet, a
    # SUBACK or a PUBACK inside poll() (2 s each here, 10 s by default) manages a handful of
    # polls, or none at all while a packet trickles in; one that keeps its budget manages dozens.
    broker = hostile(mode.split("-")[0])
    got = run_device(mp, device_lib, ota_device, tmp_path, broker, run_ms=4000, tls=mode.endswith("tls"))
    print("%s: %d polls of 100 ms in 4 s, worst %d ms" % (mode, got["polls"], got["worst_ms"]))
    assert got["polls"] >= 20, got
    assert broker.connections >= 1


@pytest.mark.parametrize("mode", ["refuse_sub", "reset", "garbage"])
def test_a_failure_after_connack_backs_off_instead_of_storming(mode, hostile, mp, device_lib, ota_device, tmp_path):
    # Backoff(100, ...): the waits before reconnecting are at least 50, 100, 200, 400, 800,
    # 1600 ms as long as no connection proves useful, so 3 s hold at most 6 connections. A
    # backoff reset by every CONNACK reconnects every 50-100 ms: 30 or more.
    broker = hostile(mode)
    run_device(mp, device_lib, ota_device, tmp_path, broker, run_ms=3000)
    print("%s: %d connections in 3 s" % (mode, broker.connections))
    assert 2 <= broker.connections <= 6


def test_a_well_behaved_broker_keeps_one_connection(hostile, mp, device_lib, ota_device, tmp_path):
    broker = hostile("good")
    got = run_device(mp, device_lib, ota_device, tmp_path, broker, run_ms=1500)
    assert broker.connections == 1 and got["polls"] >= 5
    assert b"ota/status/dev-h/online" in broker.publishes


def release_on(image, chunk_size=1024):
    blob = make_release(image, chunk_size=chunk_size)
    rid = release_id(blob).encode()
    retained = {b"ota/manifest/esp32-generic": blob}
    for i in range(0, len(image), chunk_size):
        retained[b"ota/fw/%s/%d" % (rid, i // chunk_size)] = image[i:i + chunk_size]
    return rid, retained


def test_a_chunk_one_byte_too_long_pauses_the_release_instead_of_looping(hostile, mp, device_lib, ota_device,
                                                                          tmp_path):
    # Every chunk comes back one byte too long: each is refused. Asking again at once would be
    # a request per round (thousands in 3 s); the release pauses instead, 10 s after the first
    # round, so 3 s see the first window's requests only.
    rid, retained = release_on(bytes(range(256)) * 64)
    broker = hostile("long_chunk", retained)
    run_device(mp, device_lib, ota_device, tmp_path, broker, run_ms=3000)
    chunk_subs = sum(n for topic, n in broker.subscribes.items() if topic.startswith(b"ota/fw/" + rid))
    print("long_chunk: %d chunk subscriptions in 3 s" % chunk_subs)
    assert 1 <= chunk_subs <= 4  # the first window
    assert broker.connections == 1
    assert b"ota/status/dev-h/event" in broker.publishes  # chunk_refused reported


UNIT_HEAD = r"""
from ota import events
from ota.transport import Transport, chunk_index

class M:
    id = "00112233aabbccdd"
    chunk_size = 16
    chunk_count = 64
    counter = 1
    version = "1.0.0"

class U:
    def __init__(self):
        self.m = M()
        self.done = {}
    def offer(self, blob):
        return self.m
    def missing(self, n):
        return [i for i in range(64) if i not in self.done][:n]
    def complete(self):
        return len(self.done) == 64
    def write_chunk(self, i, data):
        if len(data) != 16:
            raise __import__("ota.errors").errors.FormatError("bad_chunk")
        self.done[i] = bytes(data)
        return True

class Link:
    def __init__(self):
        self.log = []
    def publish(self, topic, msg, retain=False, qos=0):
        self.log.append(("pub", topic))
    def subscribe(self, topic, qos=0):
        self.log.append(("sub", topic))
    def unsubscribe(self, topic):
        self.log.append(("unsub", topic))

link, u = Link(), U()
t = Transport(link, u, "dev-1", "fleet")
t.on_connect()
t.on_message(b"ota/manifest/fleet", b"manifest")
t.tick()
prefix = b"ota/fw/00112233aabbccdd/"
"""


def test_chunk_topics_are_parsed_strictly(mp, device_lib):
    out = mp(UNIT_HEAD + r"""
for tail in (b"0", b"1", b"17", b"65535"):
    assert chunk_index(tail) == int(tail), tail
for tail in (b" 1 ", b"1 ", b"+1", b"-1", b"01", b"00", b"1_0", b"", b"123456", b"\xd9\xa1", b"1\x00", b"0x1"):
    assert chunk_index(tail) == -1, tail
for tail in (b" 1 ", b"01", b"+1", b"1\n"):
    t.on_message(prefix + tail, b"x" * 16)
print(sorted(u.done))
t.on_message(prefix + b"1", b"y" * 16)
print(sorted(u.done))
""", path=(device_lib,)).stdout.split("\n")
    assert out[:2] == ["[]", "[1]"]


def test_bad_digests_pause_the_release_longer_each_time_then_give_it_up(mp, device_lib):
    out = mp(UNIT_HEAD + r"""
seen = []
events.listen(lambda kind, fields: seen.append((kind, fields.get("reason"))))
requested = len([e for e in link.log if e[0] == "sub" and e[1].startswith(prefix)])
print(requested)
events.emit("rejected", release=M.id, reason="bad_digest")  # the download was thrown away
mark = len(link.log)
for _ in range(50):
    t.tick()
print([e[0] for e in link.log[mark:] if e[1].startswith(prefix)].count("sub"), t.wanted)
print(int(t.hold_until - __import__("time").ticks_ms() > 9000))
events.emit("rejected", release=M.id, reason="bad_digest")
print(int(t.hold_until - __import__("time").ticks_ms() > 19000))
events.emit("rejected", release=M.id, reason="bad_digest")
print(("rejected", "retry_limit") in seen)
""", path=(device_lib,)).stdout.split("\n")
    assert out[0] == "4"  # the first window
    assert out[1] == "0 {}"  # paused: the window given back, nothing asked again
    assert out[2:5] == ["1", "1", "True"]  # 10 s, then 20 s, then given up and reported
