"""Lending the application's own MQTT connection to the OTA transport (lib/ota/adapter.py): one
connection carries the application's messages and the update, with umqtt.simple as published on
the package index (no unsubscribe) and with an asyncio-style client (coroutine methods: the
project's own client behind coroutine wrappers, as no asyncio MQTT client is pinned at set-up)."""
import os

import pytest

from plugin_broker import make_release
from test_frozen_modules import frozen_umqtt  # noqa: F401  (a fixture: umqtt as `make setup` froze it)
from mpota import broker as hostbroker
from mpota.cmd_publish import publish_release

APP = """
import asyncio, os, time
from ota.adapter import Adapter
from ota.mqtt import MQTTClient
from ota.transport import Transport
from sink import Sink

if %(kind)r == "simple":
    from umqtt.simple import MQTTClient as SimpleClient  # umqtt.simple as published on the package index
    client = SimpleClient("dev-app", "127.0.0.1", %(port)d)
else:
    client = MQTTClient("dev-app", "127.0.0.1", %(port)d)
app_messages = []

class Async:
    # the surface of an asyncio client: every call is a coroutine
    def __init__(self, c):
        self.c = c
    async def publish(self, topic, msg, retain=False, qos=0):
        self.c.publish(topic, msg, retain, qos)
    async def subscribe(self, topic, qos=0):
        self.c.subscribe(topic, qos)
    async def unsubscribe(self, topic):
        self.c.unsubscribe(topic)

sink = Sink(%(data)r)
link = Adapter(client) if %(kind)r == "simple" else Adapter(Async(client), spawn=asyncio.create_task)
t = Transport(link, sink, "dev-app", "esp32-generic")
client.set_callback(link.callback(t, lambda topic, msg: app_messages.append((topic, bytes(msg)))))
client.set_last_will(*t.last_will())
client.connect()
client.subscribe("app/cmd", 1)
client.publish("app/cmd", b"hello app", False, 1)

async def main():
    t.on_connect()
    end = time.ticks_add(time.ticks_ms(), 30000)
    while not t.tick():
        client.check_msg()
        await asyncio.sleep_ms(1)
        assert time.ticks_diff(end, time.ticks_ms()) > 0, "timeout"
    for _ in range(20):  # let the spawned publishes run
        await asyncio.sleep_ms(1)

asyncio.run(main())
print("COMPLETE", sink.m.id, app_messages)
client.disconnect()
"""


@pytest.mark.parametrize("kind", ["simple", "async"])
def test_lent_client_carries_app_and_update(mosquitto, mp, device_lib, frozen_umqtt, ota_device, tmp_path, kind):  # noqa: F811
    mq = mosquitto()
    image = os.urandom(40 * 1024)
    with hostbroker.Connection(mq.host, mq.port) as conn:
        rid = publish_release(conn, make_release(image, chunk_size=4096), image, ["ota/manifest/esp32-generic"])
    data = tmp_path / "slot.bin"
    out = mp(APP % {"port": mq.port, "data": str(data), "kind": kind},
             path=(".frozen", device_lib, ota_device.home, frozen_umqtt)).stdout
    assert out.strip() == "COMPLETE %s [(b'app/cmd', b'hello app')]" % rid
    assert data.read_bytes() == image
    log = mq.log_text()
    assert log.count("New client connected") == 2  # the publisher and the one device connection
    with hostbroker.Connection(mq.host, mq.port) as conn:
        assert b'"progress": 100' in conn.retained(["ota/status/dev-app/state"])["ota/status/dev-app/state"]
