"""The whole update service in three lines of an application's main.py:

    import ota.service
    updates = ota.service.start(checks=[sensor_ok])   # settings: ota_config.json
    while True:
        updates.poll()      # fetch, verify, install when allowed; confirm a trial once healthy
        ...                 # the application's own work

It wires the pieces: config → Wi-Fi (`ota.net`, unless the application manages the radio) →
MQTT client (TLS from the config) → `Transport`; the trusted keys and the `Updater` are loaded
when the first manifest arrives. On a trial boot it
confirms the new image once the broker has been reached again (the next update must still be
able to arrive) and every check passes; it feeds the trial watchdog on each poll. An
application with its own MQTT client lends it: `start(client=c, on_message=..., on_connect=...)`
(umqtt.simple and alike, see `ota.adapter`)."""
import gc

from micropython import const

import ota
from ota import events, trial
from ota.errors import FormatError, OTAError

_SECTOR = const(4096)  # ota.slot.SECTOR, the updater's buffer: ota.slot is not loaded while idle


def _permission(setting):
    if setting == "now":
        from ota.policy import now

        return now
    words = setting.split()
    if len(words) == 3 and words[0] == "window":
        from ota.policy import window

        return window(int(words[1]), int(words[2]))
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


# What the updater loads, unloaded again once it has nothing in hand (its own lazy imports too,
# and the records it shares with the trial bookkeeping, which loads them again when it runs).
_UPDATE_MODULES = ("updater", "manifest", "freshness", "trust", "p256", "filesink", "encoding", "fastadd", "bundle",
                   "otadata", "store", "progress", "slot")


class _Waiting:
    """Stands in for the `Updater` while there is no release in hand (the transport calls
    `offer()` before anything else): a board with nothing to fetch does not hold the verifier,
    the trust keys, the manifest parser or the download code."""

    def __init__(self, service):
        self.service = service

    def offer(self, blob):
        return self.service.updater_now().offer(blob)


class Service:
    def __init__(self, cfg, checks=(), permission=None, client=None, on_message=None, on_connect=None, buf=None):
        self.buf = buf or bytearray(_SECTOR)  # the updater's hashing and decoding buffer
        self.checks = checks
        self.permission = permission or _permission(cfg["install"])
        self.names = cfg["board"], cfg["fleet"], cfg["group"], cfg["device_id"]
        if cfg.get("wifi"):
            from ota import net

            self.link = net.start(cfg["wifi"])  # first: the radio connects while the rest loads
        else:
            self.link = None  # the application manages the radio
        if client is None:
            link = _client(cfg)
        else:
            from ota.adapter import Lent

            link = Lent(client, on_message, on_connect)
        from ota.transport import Transport

        self.fresh = self.updater = None
        self.transport = Transport(link, _Waiting(self), cfg["device_id"], cfg["fleet"], cfg["group"], cfg["root"])

    def updater_now(self):
        """The `Updater`, loaded with the trusted keys and the freshness rules when a manifest
        arrives. A trust file that cannot be read refuses the manifest (bad_trust)."""
        if self.updater is None:
            from ota import trust
            from ota.freshness import Freshness
            from ota.updater import Updater

            board, fleet, group, device = self.names
            try:
                keys = trust.load()
            except (OSError, FormatError) as exc:
                events.emit("rejected", reason="bad_trust")
                raise FormatError("bad_trust", "the trust file in use: %s" % exc)
            # The clock: a set real-time clock, or the time learnt from timestamp records.
            self.fresh = Freshness(keys, fleet, group, device)
            self.updater = Updater(keys, board, self.permission, clock=self.fresh.now, tick=trial.feed,
                                   fresh=self.fresh, buf=self.buf)
            self.transport.u = self.updater
        return self.updater

    def _unload_updater(self):
        """Once neither the updater nor the transport has a release in hand (the manifest offered
        runs already, or was refused), the updater's modules go: a board idles without them. Not
        while timestamp records are in force: the freshness rules keep the time learnt from them
        and watch their expiry."""
        u = self.updater
        if (u is None or u.manifest is not None or u.verified or self.transport.manifest is not None
                or self.fresh is None or self.fresh.required):
            return
        self.updater = self.fresh = None
        self.transport.u = _Waiting(self)
        ota.unload(*_UPDATE_MODULES)
        gc.collect()

    def _reachable(self):
        return self.transport.connected

    def poll(self, timeout_ms=100):
        """One round of the update service; call it often from the application's loop.
        Running out of memory is reported (`fault`, no_memory) and never stops the service:
        what is saved lets the next round resume."""
        try:
            self._poll(timeout_ms)
        except MemoryError:
            gc.collect()
            events.emit("fault", error="no_memory")

    def _poll(self, timeout_ms):
        trial.feed()
        if self.fresh is not None:
            self.fresh.watch()
        if self.link is not None and not self.link.poll():
            return  # no Wi-Fi: nothing to reach; a trial that stays offline misses its deadline
        complete = self.transport.poll(timeout_ms)
        self._unload_updater()
        trial.link(self.transport.connected)
        if trial.in_trial() and self.transport.connected:
            trial.confirm([self._reachable] + list(self.checks))
        u = self.updater
        if complete and u is not None:  # complete: a release is in hand, so the updater is loaded
            try:
                if not u.verified:
                    u.finish()
                u.install()
            except OTAError:
                pass  # reported as an event; a failed download is fetched again


def start(checks=(), permission=None, client=None, on_message=None, on_connect=None):
    """The service configured from ota_config.json (see `ota.config`). `client`: the
    application's own umqtt.simple-style client, lent (`ota.adapter.Lent`); the service then
    connects it, `on_message(topic, msg)` gets the application's messages and
    `on_connect(client)` runs after every connection, to subscribe again."""
    gc.collect()  # what boot.py left (the trial bookkeeping) goes first, so the buffer finds a hole
    buf = bytearray(_SECTOR)  # first, while the heap is still whole: the one large buffer it keeps
    from ota import config

    cfg = config.load()
    ota.unload("config", "store")  # read once: its checks and defaults need no heap from now on
    return Service(cfg, checks, permission, client, on_message, on_connect, buf)
