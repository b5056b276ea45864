"""Fuzz targets for fuzz_harness.py (MicroPython, unix port with the simulated board modules).

Each target reads its seeds from the corpus folder test_fuzz.py writes (signed manifests, the
trust file, a firmware image, a good config) and feeds one mutated input per `case(rng)` to one
interface. Pointing a target at a new interface means editing its `case` only."""
import io
import json
import select

from fuzz_harness import mutate
from mqtt_packets import packet, publish  # shared with hostile_broker.py (CPython)
from ota import config, events, history, manifest, store, trial, trust
from ota.errors import OTAError
from ota.progress import Progress


def _read(path):
    with open(path, "rb") as f:
        return f.read()


class _Corpus:
    def __init__(self, folder):
        self.dir = folder
        self.info = json.loads(_read(folder + "/info.json"))
        self.keys = trust.load(folder + "/trust.bin")
        self.blobs = [_read(folder + "/" + name) for name in self.info["manifests"]]
        self.last = b""
        self.violations = 0

    def check(self, blob):
        return manifest.check(blob, self.keys, self.info["board"], 0, self.info["slot_size"], self.info["now"])


class manifest_raw(_Corpus):
    """Signed manifests damaged anywhere (header, names, lengths, the DER signature)."""

    def case(self, rng):
        self.last = blob = mutate(rng, rng.pick(self.blobs))
        self.check(blob)


class manifest_signed(_Corpus):
    """Manifests whose to-be-signed bytes were damaged on the host and then signed: they pass
    the signature and reach every field check behind it."""

    def __init__(self, folder):
        super().__init__(folder)
        self.file = open(folder + "/signed.bin", "rb")  # read one at a time: a soak has 10^4 of them

    def _next(self):
        head = self.file.read(2)
        if len(head) < 2:
            self.file.seek(0)
            head = self.file.read(2)
        return self.file.read(head[0] << 8 | head[1])

    def case(self, rng):
        self.last = blob = self._next()
        self.check(blob)


class _Stream(io.IOBase):
    """A socket whose peer sends `data` and then closes; always readable, as a closed socket is."""

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def readinto(self, buf):
        n = min(len(buf), len(self.data) - self.pos)
        buf[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n

    def write(self, buf):
        return len(buf)

    def ioctl(self, req, arg):
        return arg & select.POLLIN if req == 3 else 0

    def close(self):
        pass


class mqtt(_Corpus):
    """Broker byte streams (PUBLISH of every size and QoS, acks, pings, junk) damaged and fed to
    the client's decoder, with and without a subscribe or QoS 1 publish waiting for its ack."""

    def __init__(self, folder):
        super().__init__(folder)
        blob = self.blobs[0]
        self.packets = [
            publish(b"ota/manifest/plant", blob, 1, 7, True), publish(b"ota/fw/0011223344556677/0", b"\xa5" * 1000),
            publish(b"t", b""), publish(b"x" * 200, b"y" * 50), publish(b"big", b"z" * 5000, 1, 9),
            packet(0x90, b"\x00\x01\x01"), packet(0x90, b"\x00\x01\x80"), packet(0x40, b"\x00\x01"),
            packet(0xB0, b"\x00\x02"), packet(0xD0, b""), packet(0x20, b"\x00\x00"), packet(0xE0, b""),
        ]

    def case(self, rng):
        from ota.mqtt import MQTTClient

        stream = b"".join(rng.pick(self.packets) for _ in range(1 + rng.below(5)))
        if not rng.chance(8):
            stream = mutate(rng, stream, 1 + rng.below(6))
        self.last = stream
        c = MQTTClient("dev-1", "127.0.0.1", 1883, bufsize=rng.pick((64, 1100, 4224)), topic_size=rng.pick((8, 128)),
                       timeout=1)
        c.set_callback(lambda topic, msg: bytes(msg))
        c.set_oversize_callback(lambda topic, size: None)
        c.sock = _Stream(stream)
        c.poller = c.rpoller = select.poll()
        c.poller.register(c.sock, select.POLLIN)
        what = rng.below(3)
        if what == 1:
            c.subscribe(b"ota/manifest/plant", 1)
        elif what == 2:
            c.publish(b"ota/status/dev-1/state", b"{}", True, 1)
        for _ in range(32):
            c.wait_msg(0)


class _Link:
    """The transport's side of a lent connection: what it sends goes nowhere."""

    def publish(self, topic, msg, retain=False, qos=0):
        pass

    def subscribe(self, topic, qos=0):
        pass

    def unsubscribe(self, topic):
        pass


class transport(_Corpus):
    """Message sequences for the transport and the updater behind it (real flash writes on the
    simulated board): manifests, rollout notes and chunks, out of order, repeated, damaged in
    topic or payload, under wrong release ids."""

    def __init__(self, folder):
        super().__init__(folder)
        data = _read(folder + "/chunks.bin")
        self.chunks = []  # every chunk topic's payload, in index order
        at = 0
        while at < len(data):
            n = int.from_bytes(data[at:at + 4], "big")
            self.chunks.append(data[at + 4:at + 4 + n])
            at += 4 + n
        self.rid = self.info["release"].encode()
        self.stats = {"offered": 0, "chunks": 0, "finished": 0}

    def _messages(self, rng):
        out = [(b"ota/manifest/plant", rng.pick(self.blobs) if rng.chance(4) else self.blobs[0])]
        count = len(self.chunks)
        if rng.chance(2):  # the order a device asks in: the table's index, its pages, then payload
            payload = self.info["chunk_count"]
            for i in list(range(payload, count)) + list(range(payload)):
                out.append((b"ota/fw/" + self.rid + b"/" + str(i).encode(), self.chunks[i]))
                if rng.chance(4):
                    out.append(out[-1])
            return out
        for _ in range(rng.below(3 * count + 3)):
            kind = rng.below(12)
            if kind < 9:
                i = rng.below(count + 1)
                payload = self.chunks[i] if i < count else self.chunks[rng.below(count)]  # one past the end
                out.append((b"ota/fw/" + self.rid + b"/" + str(i).encode(), payload))
            elif kind == 9:
                out.append((b"ota/rollout/plant", json.dumps({"rollout": "r1", "release": self.rid.decode()}).encode()))
            elif kind == 10:
                out.append((rng.pick((b"ota/manifest/plant", b"ota/manifest/plant/device/dev-1")), rng.pick(self.blobs)))
            else:
                out.append((b"ota/manifest/plant", b""))
        return out

    def case(self, rng):
        from ota.transport import Transport
        from ota.updater import Updater

        if rng.chance(2):
            Progress.clear()
            store.remove(store.MANIFEST)
        u = Updater(self.keys, self.info["board"])
        t = Transport(_Link(), u, "dev-1", "plant")
        try:
            t.on_connect()
            messages = self._messages(rng)
            self.last = repr(len(messages))
            for topic, payload in messages:
                if rng.chance(6):
                    topic = mutate(rng, topic, 1)
                if rng.chance(5):
                    payload = mutate(rng, payload, 1 + rng.below(3))
                t.on_message(topic, memoryview(payload))
                if t.tick():
                    u.finish()
                    self.stats["finished"] += 1
                    break
            self.stats["offered"] += t.manifest is not None
            self.stats["chunks"] += u.progress.count if u.progress else 0
        finally:
            t.stop()


class state(_Corpus):
    """The device's state files: progress records and history copies whole (right CRC, wrong
    content) or torn, pending-install records, the freshness record, raw damage under the CRC. The history's floor
    must never drop below what a single damaged copy hides (a violation otherwise), and a
    damaged progress record must never hold off a valid offer."""

    def __init__(self, folder):
        super().__init__(folder)
        p = Progress(self.info["release"], 3, 4, 4)
        p.received[0] = 0x05
        p.erased[0] = 0x0F
        p.save()
        self.progress = store.read("progress")
        self.pending = json.dumps({"release": self.info["release"], "version": "2.0.0", "counter": 3, "from": "1.0.0",
                                   "slot": 1, "seq": 2}).encode()

    def _put(self, rng, name, data):
        if rng.chance(4):
            store._ensure_dir()
            with open(store.path(name), "wb") as f:  # under the CRC: raw damage
                f.write(mutate(rng, data + b"\x00\x00\x00\x00"))
        else:
            store.write(name, mutate(rng, data))

    def case(self, rng):
        which = rng.below(4)
        if which == 3:
            from ota import freshness

            self._put(rng, freshness._NAME, b"[1767225600, 0, 1767229200]")
            freshness.Freshness(self.keys, "plant", None, "dev-1", clock=None).now()
        elif which == 0:
            self._put(rng, "progress", self.progress)
            saved = Progress.load()
            if saved is not None:
                saved.missing(4)
                saved.complete()
            if rng.chance(4):
                from ota.updater import Updater

                store.remove(store.MANIFEST)
                for n in ("history.0", "history.1", "history"):
                    store.remove(n)
                try:
                    Updater(self.keys, self.info["board"]).offer(self.blobs[0])
                except OTAError:
                    self.violations += 1  # a damaged record held a valid offer off
        elif which == 1:
            for n in ("history.0", "history.1", "history"):
                store.remove(n)
            history.confirmed("aa" * 8, 5)
            history.confirmed(self.info["release"], 6)
            text = store.read("history.0")
            both = rng.chance(8)
            for name in ("history.0", "history.1") if both else (rng.pick(("history.0", "history.1")),):
                self._put(rng, name, text)
            try:
                floor = history.load()["counter"]
            except OTAError:
                if not both:
                    self.violations += 1  # one good copy was left: it must be read
                raise
            if floor < 6 and not both:
                self.violations += 1
        else:
            self._put(rng, store.PENDING, self.pending)
            self.last = _read(store.path(store.PENDING))
            trial.on_boot()


class trust_file(_Corpus):
    """The trust file, damaged in its header (often) or anywhere."""

    def __init__(self, folder):
        super().__init__(folder)
        self.data = _read(folder + "/trust.bin")

    def case(self, rng):
        if rng.chance(2):
            head = mutate(rng, self.data[:24])
            data = head + self.data[24:]
        else:
            data = mutate(rng, self.data)
        self.last = data[:64]
        with open("fuzz-trust.bin", "wb") as f:
            f.write(data)
        trust.load("fuzz-trust.bin")


_ODD = (None, True, False, -1, 0, 2 ** 40, 3.5, "", "a/b", "#", "x" * 300, [], {}, {"host": 1}, "window 9 99")


class config_file(_Corpus):
    """ota_config.json damaged as bytes or as values; the settings the service gets must pass
    every check (a violation otherwise), and `load()` must never raise."""

    def __init__(self, folder):
        super().__init__(folder)
        self.good = _read(folder + "/config.json")

    def case(self, rng):
        from ota.service import _permission

        if rng.chance(2):
            data = mutate(rng, self.good)
        else:
            cfg = json.loads(self.good)
            for _ in range(1 + rng.below(3)):
                key = rng.pick(sorted(cfg))
                if key == "broker" and type(cfg["broker"]) is dict and cfg["broker"] and rng.chance(2):
                    cfg["broker"][rng.pick(sorted(cfg["broker"]))] = rng.pick(_ODD)
                else:
                    cfg[key] = rng.pick(_ODD)
            data = json.dumps(cfg).encode()
        self.last = data
        if rng.chance(4):
            store.remove("config")  # no last good copy
        with open("ota_config.json", "wb") as f:
            f.write(data)
        cfg = config.load()
        try:
            config.check(cfg)
            _permission(cfg["install"])
        except Exception:  # noqa: BLE001
            self.violations += 1
        events.state()  # reports stay readable
