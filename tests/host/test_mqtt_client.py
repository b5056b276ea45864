"""The device MQTT client (lib/ota/mqtt.py) under the unix port against a real mosquitto, and
against a peer that goes silent: every wait is bounded, big messages are never allocated."""
import socket
import threading
import time

import pytest

HEAD = """
import time
from ota.mqtt import MQTTClient, MQTTError, Backoff
got = []
def on_msg(topic, msg):
    got.append((topic, bytes(msg), type(msg).__name__))
"""


def run(mp, device_lib, code, heapsize="48K"):
    return mp(HEAD + code, path=(device_lib,), heapsize=heapsize).stdout.split("\n")


def test_publish_subscribe_qos0_qos1_retained_unsubscribe(mosquitto, mp, device_lib):
    mq = mosquitto()
    out = run(mp, device_lib, """
c = MQTTClient("dev-1", "127.0.0.1", %d)
c.set_callback(on_msg)
print(c.connect())
c.publish("t/kept", b"retained", retain=True, qos=1)
c.subscribe("t/#", 1)
c.publish("t/a", b"zero", qos=0)
c.publish("t/b", b"one", qos=1)
while len(got) < 3:
    c.wait_msg(2000)
c.unsubscribe("t/#")
c.publish("t/c", b"unheard", qos=1)
print(c.wait_msg(300))
print(sorted(got))
c.disconnect()
""" % mq.port)
    assert out[0] == "0"
    assert out[1] == "None"
    assert out[2] == ("[(b't/a', b'zero', 'memoryview'), (b't/b', b'one', 'memoryview'), "
                      "(b't/kept', b'retained', 'memoryview')]")


def test_oversized_publish_is_discarded_not_allocated(mosquitto, mp, device_lib):
    mq = mosquitto()
    out = run(mp, device_lib, """
import gc
c = MQTTClient("dev-1", "127.0.0.1", %d, bufsize=1024)
c.set_callback(on_msg)
big = []
c.set_oversize_callback(lambda topic, size: big.append((topic, size)))
c.connect()
c.subscribe("t/#", 1)
gc.collect()
print(gc.mem_free() < 100000)
p = MQTTClient("pub", "127.0.0.1", %d)
p.connect()
chunk = b"x" * 1000
# a 100 KB message, bigger than this whole heap, sent in pieces by a second client
p._header(0x32, 2 + 5 + 2 + 100000)
p._str(b"t/big")
p._u16(7)
for i in range(100):
    p._put(chunk)
p._drain()
p.publish("t/small", b"fits", qos=1)
while not got:
    c.wait_msg(2000)
print(big, c.oversized, got)
""" % (mq.port, mq.port))
    assert out[0] == "True"
    assert out[1] == "[(b't/big', 100000)] 1 [(b't/small', b'fits', 'memoryview')]"


def test_keepalive_pings_keep_the_link(mosquitto, mp, device_lib):
    mq = mosquitto()
    out = run(mp, device_lib, """
c = MQTTClient("dev-k", "127.0.0.1", %d, keepalive=1)
c.connect()
ops = []
end = time.ticks_add(time.ticks_ms(), 2600)
while time.ticks_diff(end, time.ticks_ms()) > 0:
    ops.append(c.wait_msg(max(0, time.ticks_diff(end, time.ticks_ms()))))
c.publish("t", b"still here", qos=1)
c.disconnect()
print(ops.count(0xD0) >= 2, "ok")
""" % mq.port)
    assert out[0] == "True ok"
    assert mq.log_text().count("Received PINGREQ from dev-k") >= 2


class SilentPeer:
    """Accepts one connection, answers CONNACK if asked, then says nothing ever again."""

    def __init__(self, connack):
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(1)
        self.port = self.server.getsockname()[1]
        self.conns = []
        threading.Thread(target=self._serve, args=(connack,), daemon=True).start()

    def _serve(self, connack):
        conn, _ = self.server.accept()
        self.conns.append(conn)
        if connack:
            conn.recv(1024)
            conn.sendall(b"\x20\x02\x00\x00")
        time.sleep(30)

    def close(self):
        for s in self.conns + [self.server]:
            s.close()


@pytest.mark.parametrize("connack", [False, True], ids=["no-connack", "no-pingresp"])
def test_a_silent_peer_raises_instead_of_hanging(mp, device_lib, connack):
    peer = SilentPeer(connack)
    try:
        start = time.monotonic()
        out = run(mp, device_lib, """
c = MQTTClient("dev-1", "127.0.0.1", %d, keepalive=1, timeout=1)
try:
    c.connect()
    print("connected")
    while True:
        c.wait_msg()
except MQTTError as e:
    print(e.reason)
""" % peer.port)
        elapsed = time.monotonic() - start
    finally:
        peer.close()
    assert out[:2] == (["connected", "timeout"] if connack else ["timeout", ""])
    assert elapsed < 5


def test_credentials_are_checked(mosquitto, mp, device_lib):
    mq = mosquitto(users={"dev-1": "secret"})
    out = run(mp, device_lib, """
for pw in ("wrong", "secret"):
    c = MQTTClient("dev-1", "127.0.0.1", %d, user="dev-1", password=pw)
    try:
        print(c.connect())
        c.disconnect()
    except MQTTError as e:
        print(e.reason, e.detail)
""" % mq.port)
    assert out[:2] == ["refused 5", "0"]


def test_last_will_and_reconnect_with_backoff(mosquitto, mp, device_lib):
    mq = mosquitto(persistence=True)
    threading.Timer(1.0, lambda: mq.restart(pause=0.5)).start()
    out = run(mp, device_lib, """
b = Backoff(100, 400)
print(sorted(set(b.next_ms() <= d for d in (100, 200, 400, 400, 400))))
b.reset()
c = MQTTClient("dev-w", "127.0.0.1", %d, keepalive=5)
c.set_last_will("status/dev-w", b"0", retain=True, qos=1)
c.connect()
c.publish("status/dev-w", b"1", retain=True, qos=1)
try:
    while True:
        c.wait_msg()
except MQTTError as e:
    print("lost:", e.reason)
c.reconnect(b, attempts=100)
c.set_callback(on_msg)
c.subscribe("status/dev-w", 1)
c.wait_msg(2000)
print(got)
c.publish("status/dev-w", b"1", retain=True, qos=1)
c.close()
""" % mq.port)
    # the broker going down published the will (kept across its restart), and so did close()
    assert out[:3] == ["[True]", "lost: closed", "[(b'status/dev-w', b'0', 'memoryview')]"]
    with __import__("mpota.broker").broker.Connection(mq.host, mq.port) as conn:
        assert conn.retained(["status/dev-w"], want=["status/dev-w"]) == {"status/dev-w": b"0"}  # last will


def test_settle_sees_every_publish_acknowledged_before_a_reset(mosquitto, mp, device_lib):
    """What a device sends just before `machine.reset()` must reach the broker: `settle` waits
    for the PUBACKs (dropping messages that come meanwhile), and is bounded when none come."""
    mq = mosquitto()
    peer = SilentPeer(connack=True)
    try:
        out = run(mp, device_lib, """
c = MQTTClient("dev-s", "127.0.0.1", %d)
c.set_callback(on_msg)
c.connect()
c.subscribe("t/#", 1)
for i in range(20):
    c.queue_publish("t/last", b"event %%d" %% i, False, 1)
print(c.unacked, c.settle(2000), c.unacked, got)
c.sock.close()  # as a reset does: no DISCONNECT
s = MQTTClient("dev-q", "127.0.0.1", %d, timeout=1)
s.connect()
s.queue_publish("t/x", b"never acked", False, 1)
t0 = time.ticks_ms()
print(s.settle(500), 400 <= time.ticks_diff(time.ticks_ms(), t0) < 1500)
""" % (mq.port, peer.port))
    finally:
        peer.close()
    assert out[:2] == ["20 True 0 []", "False True"]
    log = mq.log_text()
    assert log.count("Received PUBLISH from dev-s") == 20
    assert "Received DISCONNECT from dev-s" not in log  # no goodbye: the will would still fire
