"""Lend the application's own MQTT client to the OTA service: one connection, not two.

The short way, with `umqtt.simple` (or any client with its methods): the service drives the
connection (connect, reconnect with backoff, clean session) and hands the application its
messages and each new connection, to subscribe again:

    client = umqtt.simple.MQTTClient("sensor-01", host, ssl=ctx)
    updates = ota.service.start(checks=[ok], client=client,
                                on_message=app_message, on_connect=app_subscribe)
    while True:
        updates.poll()             # client.check_msg() happens here; OTA topics are kept
        client.publish(b"app/temp", reading())   # the application uses the same client

An asyncio application lends it the same way: `await ota.aservice.run(client=client, ...)`.
`Lent` sets TCP_NODELAY on the client's socket: umqtt.simple writes each packet in pieces,
and with Nagle's algorithm each chunk request then waits for the broker's delayed ACK.

umqtt.robust is refused (UnsupportedClient): after a lost link it reconnects inside publish()
and wait_msg() with a persistent session and tells no one, so the OTA subscriptions and the
online status are never renewed and the update stalls. Lend an umqtt.simple client instead;
the service reconnects it.

The long way, for a client the application drives itself:

    link = Adapter(client)
    t = Transport(link, updater, device="dev-1", fleet="esp32-generic")
    client.set_callback(link.callback(t, app_callback))   # OTA topics go to the transport
    client.set_last_will(*t.last_will())
    client.connect(); t.on_connect()                      # again after every reconnection
    # (and t.on_disconnect() when the application sees its link drop)
    while True:
        client.check_msg(); t.tick()                      # t.tick() is True: call finish()

With an asyncio client whose `publish`/`subscribe` are coroutines (e.g. mqtt_as), pass
`spawn=asyncio.create_task`: each call is started as a task instead of awaited here.

umqtt.simple has `unsubscribe` (micropython-lib); a client without it still works: chunk
subscriptions then stay until the next reconnection, which costs the broker a little memory."""
import time

from micropython import const

from ota.errors import OTAError
from ota.netopt import nodelay

_IDLE_MS = const(2)  # between looks at a lent client's socket while waiting


class UnsupportedClient(OTAError):
    reason = "unsupported_client"


class Adapter:
    """The `publish`/`subscribe`/`unsubscribe` surface the transport needs, over any client."""

    def __init__(self, client, spawn=None):
        self.client = client
        self.spawn = spawn

    def _call(self, fn, *args):
        result = fn(*args)
        if self.spawn:
            self.spawn(result)

    def publish(self, topic, msg, retain=False, qos=0):
        self._call(self.client.publish, topic, msg, retain, qos)

    def subscribe(self, topic, qos=0):
        self._call(self.client.subscribe, topic, qos)

    def unsubscribe(self, topic):
        fn = getattr(self.client, "unsubscribe", None)
        if fn:
            self._call(fn, topic)

    @staticmethod
    def callback(transport, app_callback=None):
        """A message callback for the client: OTA messages go to `transport`, the rest (with any
        extra arguments the client passes, such as a retained flag) to `app_callback`."""

        def on_message(topic, msg, *rest):
            if not transport.on_message(topic, msg) and app_callback:
                app_callback(topic, msg, *rest)

        return on_message


def _ignore(topic, msg):
    return False


class _NoDelay:
    """An SSL context stand-in that sets TCP_NODELAY on the raw socket, then wraps it."""

    def __init__(self, ctx):
        self.ctx = ctx

    def wrap_socket(self, sock, *args, **kw):
        nodelay(sock)
        return self.ctx.wrap_socket(sock, *args, **kw)


class Lent:
    """An umqtt.simple-style client with the surface `Transport.poll()` drives: connect,
    `wait_msg(timeout_ms)`, `check_msg()`, close. OTA messages go to the transport, the rest to
    `on_message(topic, msg)`; `on_connect(client)` runs after every connection."""

    def __init__(self, client, on_message=None, on_connect=None):
        if hasattr(client, "reconnect") and hasattr(client, "delay"):
            raise UnsupportedClient("unsupported_client", "umqtt.robust reconnects silently with a persistent "
                                    "session: lend an umqtt.simple client, the service reconnects it")
        self.client = client
        self.on_message = on_message
        self.on_connect = on_connect
        self.transport_cb = _ignore
        self.handled = 0
        self.pinged = time.ticks_ms()
        buf = getattr(client, "buf", None)
        if buf is not None:
            self.buf = buf  # ota.mqtt: the transport refuses chunks larger than its buffer
        ssl = getattr(client, "ssl", None)
        if ssl is not None and hasattr(ssl, "wrap_socket") and not isinstance(ssl, _NoDelay):
            client.ssl = _NoDelay(ssl)

    def set_callback(self, f):
        self.transport_cb = f
        self.client.set_callback(self._message)

    def _message(self, topic, msg, *rest):
        self.handled += 1
        if not self.transport_cb(topic, msg) and self.on_message:
            self.on_message(topic, msg, *rest)

    def set_last_will(self, topic, msg, retain=False, qos=0):
        self.client.set_last_will(topic, msg, retain, qos)

    def connect(self):
        try:
            self.client.connect()
        except (OSError, MemoryError):
            raise
        except Exception as exc:  # umqtt's MQTTException: the broker refused the CONNECT
            raise OTAError("refused", repr(exc))
        nodelay(self.client.sock)
        self.pinged = time.ticks_ms()
        if self.on_connect:
            self.on_connect(self.client)

    def close(self):
        sock = getattr(self.client, "sock", None)
        if sock:
            try:
                sock.close()
            except OSError:
                pass

    def disconnect(self):
        self.client.disconnect()

    def publish(self, topic, msg, retain=False, qos=0):
        self.client.publish(topic, msg, retain, qos)

    def subscribe(self, topic, qos=0):
        try:
            self.client.subscribe(topic, qos)
        except (OSError, MemoryError):
            raise
        except Exception as exc:  # umqtt's MQTTException: SUBACK 0x80, refused by the ACL
            raise OTAError("sub_refused", repr(exc))

    def unsubscribe(self, topic):
        fn = getattr(self.client, "unsubscribe", None)
        if fn:
            fn(topic)

    def check_msg(self):
        """Handle one waiting packet without blocking; None when there was none."""
        keepalive = getattr(self.client, "keepalive", 0)
        if keepalive and time.ticks_diff(time.ticks_ms(), self.pinged) > keepalive * 500:
            self.client.ping()  # umqtt.simple keeps no keepalive itself; its PINGRESP comes back here
            self.pinged = time.ticks_ms()
        before = self.handled
        op = self.client.check_msg()
        return op if op is not None or self.handled == before else 0x30

    def wait_msg(self, timeout_ms=None):
        """Handle one packet, waiting at most `timeout_ms` (the client's own wait_msg has no
        bound: it blocks on the socket)."""
        start = time.ticks_ms()
        while True:
            op = self.check_msg()
            if op is not None:
                return op
            if timeout_ms is not None and time.ticks_diff(time.ticks_ms(), start) >= timeout_ms:
                return None
            time.sleep_ms(_IDLE_MS)
