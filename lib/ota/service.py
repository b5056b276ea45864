"""The whole update service in three lines of an application's main.py:

    import ota.service
    updates = ota.service.start(checks=[sensor_ok])   # settings: ota_config.json
    while True:
        updates.poll()      # fetch, verify, install when allowed; confirm a trial once healthy
        ...                 # the application's own work

It wires the pieces: config → trusted keys → `Updater` → MQTT client (TLS from the config) →
`Transport`. On a trial boot it confirms the new image once the broker has been reached again
(the next update must still be able to arrive) and every check passes; it feeds the trial
watchdog on each poll. An application with its own MQTT client builds `Transport` itself with
`ota.adapter` instead (see docs/PROTOCOL.md)."""
from ota import config, policy, trial, trust
from ota.freshness import Freshness
from ota.errors import OTAError
from ota.transport import Transport
from ota.updater import Updater


def _permission(setting):
    if setting == "now":
        return policy.now
    words = setting.split()
    if len(words) == 3 and words[0] == "window":
        return policy.window(int(words[1]), int(words[2]))
    raise ValueError("install policy: 'now' or 'window H1 H2'")


def _read(name):
    with open(name, "rb") as f:
        return f.read()


def _client(cfg):
    from ota.mqtt import MQTTClient

    broker = cfg["broker"]
    ctx = None
    if broker.get("tls", True):
        import tls

        ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
        ctx.verify_mode = tls.CERT_REQUIRED  # type: ignore[attr-defined]  # missing from the stub, not the firmware
        ctx.load_verify_locations(_read(broker["ca"]))
        if broker.get("cert"):
            ctx.load_cert_chain(_read(broker["cert"]), _read(broker["key"]))
    return MQTTClient(cfg["device_id"], broker["host"], broker.get("port", 0), broker.get("user"),
                      broker.get("password"), broker.get("keepalive", 30), ctx, broker.get("server_hostname"))


class Service:
    def __init__(self, cfg, checks=(), permission=None, client=None):
        self.checks = checks
        keys = trust.load()
        # The clock: a set real-time clock, or the time learnt from timestamp records.
        self.fresh = Freshness(keys, cfg["fleet"], cfg["group"], cfg["device_id"])
        self.updater = Updater(keys, cfg["board"], permission or _permission(cfg["install"]),
                               clock=self.fresh.now, tick=trial.feed, fresh=self.fresh)
        self.transport = Transport(client or _client(cfg), self.updater, cfg["device_id"], cfg["fleet"],
                                   cfg["group"], cfg["root"])

    def _reachable(self):
        return self.transport.connected

    def poll(self, timeout_ms=100):
        """One round of the update service; call it often from the application's loop."""
        trial.feed()
        self.fresh.watch()
        complete = self.transport.poll(timeout_ms)
        trial.link(self.transport.connected)
        if trial.in_trial() and self.transport.connected:
            trial.confirm([self._reachable] + list(self.checks))
        if complete:
            try:
                if not self.updater.verified:
                    self.updater.finish()
                self.updater.install()
            except OTAError:
                pass  # reported as an event; a failed download is fetched again


def start(checks=(), permission=None, client=None):
    """The service configured from ota_config.json (see `ota.config`)."""
    return Service(config.load(), checks, permission, client)
