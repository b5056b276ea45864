"""Lend the application's own MQTT client to the OTA transport: one connection, not two.

With `umqtt.simple` (or `ota.mqtt`):

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

A client without `unsubscribe` (umqtt.simple) still works: chunk subscriptions then stay until
the next reconnection, which costs the broker a little memory and nothing else."""


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
