"""Device side of docs/PROTOCOL.md: choose the winning manifest, pull chunks through a small
window of retained-topic subscriptions, publish status.

Own connection (`ota.mqtt.MQTTClient`):

    t = Transport(client, updater, device="dev-1", fleet="esp32-generic", group="canary")
    while True:
        if t.poll(1000):           # connects, reconnects with backoff, fetches; True: all chunks in
            updater.finish()       # then install() when permitted

Lent connection (`ota.adapter`): the application calls `t.on_connect()` after each connection,
passes messages to `t.on_message(topic, msg)` and calls `t.tick()` from its loop.

Nothing here runs network calls from inside a message callback: the callback only records
manifests and writes chunks (from the client's buffer); `tick()` does the rest.

Beside each manifest level a retained rollout note (`<root>/rollout/...`, JSON `{"rollout",
"release"}`) names the rollout delivering it. It is repeated in status reports about that release
and used for nothing else: it is unsigned delivery metadata."""
import json
import time

from micropython import const

from ota.errors import FormatError, OTAError

WINDOW = const(4)  # chunk topics subscribed at once: all the broker ever holds for this device
CHUNK_TIMEOUT_MS = const(5000)  # then the chunk is requested again
STALLS = const(3)  # rounds of late chunks before the link is declared dead
_MAX_BACKOFF_SHIFT = const(4)
_MAX_PENDING = const(16)
_MAX_NOTE = const(200)  # a rollout note is a few dozen bytes; anything longer is ignored

_LEVELS = ("fleet", "group", "device")
_FALL_BACK = ("stale", "replayed", "wrong_level", "mismatch")  # freshness refusals of one level


def _name(value, what):
    if not value or len(value) > 64 or "/" in value or "+" in value or "#" in value or "\0" in value:
        raise FormatError("bad_name", what)
    return value


def _note(msg):
    """(rollout, release) from a rollout note, or None for an empty or unreadable one."""
    if not 0 < len(msg) <= _MAX_NOTE:
        return None
    try:
        note = json.loads(bytes(msg))
        return str(note["rollout"]), str(note["release"])
    except (ValueError, KeyError, TypeError):
        return None


class Transport:
    """One device's OTA conversation over MQTT. `link` has `publish(topic, msg, retain, qos)`,
    `subscribe(topic, qos)` and `unsubscribe(topic)`; with `poll()` it must be an MQTTClient."""

    def __init__(self, link, updater, device, fleet, group=None, root="ota", window=WINDOW,
                 chunk_timeout_ms=CHUNK_TIMEOUT_MS, events=None, backoff=None):
        if events is None:
            from ota import events
        self.link = link
        self.u = updater
        self.events = events
        self.device = _name(device, "device")
        root = _name(root, "root")
        self.topics = self._levels(root + "/manifest/", fleet, group)
        self.note_topics = self._levels(root + "/rollout/", fleet, group)
        self.notes: list = [None, None, None]  # per level: (rollout id, release id) or None
        self.last_kind = None  # the last event reported, for the retained state
        self.fw = (root + "/fw/").encode()
        self.status = root + "/status/" + device + "/"
        self.window = window
        self.chunk_timeout_ms = chunk_timeout_ms
        self.backoff = backoff
        self.blobs: list = [None, None, None]
        self.dirty = False
        self.offered = None  # last blob given to the updater, accepted or not
        self.manifest = None  # the release being fetched
        self.prefix = b""  # b"<root>/fw/<id>/" of the release being fetched
        self.wanted = {}  # chunk index -> ticks_ms of its last request
        self.received = []  # indices to unsubscribe from
        self.stalls = 0
        self.pending = []  # (kind, fields) still to publish
        self.connected = False
        self.own = False
        self.retry_at = None
        buf = getattr(link, "buf", None)
        self.max_chunk = len(buf) if buf is not None else None  # None: the lent client's limit is unknown
        self._listener = self._on_event  # one bound method, so that forget() finds it
        events.listen(self._listener)

    def _levels(self, prefix, fleet, group):
        base = prefix + _name(fleet, "fleet")
        topics = [base.encode(), None, (base + "/device/" + self.device).encode()]
        if group:
            topics[1] = (base + "/group/" + _name(group, "group")).encode()
        return topics

    # --- status ---
    def rollout(self, release):
        """The rollout id the winning level's note gives for `release` (any release when None)."""
        for level in (2, 1, 0):
            if self.blobs[level] is not None:
                note = self.notes[level]
                if note and (release is None or note[1] == release):
                    return note[0]
                return None
        return None

    def last_will(self):
        """(topic, msg, retain, qos) for the client's last will: `online` goes to 0."""
        return self.status + "online", b"0", True, 1

    def _on_event(self, kind, fields):
        if kind == "confirmed":
            self.offered = None  # a release refused during the trial may be taken now
            self.dirty = True
        if len(self.pending) >= _MAX_PENDING:
            self.pending.pop(0)
        self.pending.append((kind, fields))

    def _publish_state(self):
        state = dict(self.events.state())
        state["device"] = self.device
        state["rollout"] = self.rollout(state.get("release"))
        state["event"] = self.last_kind
        self.link.publish(self.status + "state", json.dumps(state), True, 1)

    def _flush_status(self):
        if not self.pending:
            return
        while self.pending:
            kind, fields = self.pending[0]
            event = dict(fields)
            event["kind"] = kind
            event["rollout"] = self.rollout(fields.get("release"))
            try:
                text = json.dumps(event)
            except (TypeError, ValueError):  # a field JSON cannot carry: report the step anyway
                text = json.dumps({"kind": kind})
            self.link.publish(self.status + "event", text, False, 1)
            self.pending.pop(0)
            self.last_kind = kind
        self._publish_state()

    # --- connection ---
    def on_connect(self):
        """After every (re)connection: announce, publish the state, subscribe to the manifests.
        The broker then resends the retained manifests, and fetching resumes from `missing()`."""
        self.connected = True
        self.wanted = {}
        self.received = []
        self.stalls = 0
        self.offered = None
        self.blobs = [None, None, None]
        self.notes = [None, None, None]
        self.link.publish(self.status + "online", b"1", True, 1)
        self._publish_state()
        # Notes first: their retained messages are in before the manifests' SUBACKs, so the
        # first report about a release already names its rollout.
        for topic in self.note_topics:
            if topic:
                try:
                    self.link.subscribe(topic, 1)
                except OTAError as exc:  # a broker whose ACL has no rollout notes: no rollout ids
                    if exc.reason != "sub_refused":
                        raise
        for topic in self.topics:
            if topic:
                self.link.subscribe(topic, 1)

    def on_disconnect(self):
        self.connected = False

    def start(self):
        """Own-client mode: install the callback and last will; `poll()` connects."""
        self.own = True
        self.link.set_callback(self.on_message)
        self.link.set_last_will(*self.last_will())

    def poll(self, timeout_ms=100):
        """Own-client mode: connect if needed (one attempt, then backoff), handle incoming
        messages for up to `timeout_ms`, do the protocol's work. True once every chunk is in."""
        if not self.own:
            self.start()
        try:
            if not self.connected:
                if not self._connect(timeout_ms):
                    return False
            if self.tick():
                return True
            # Chunks often arrive while subscribe() waits for its SUBACK: then there is work
            # to do at once and no reason to wait.
            self.link.wait_msg(0 if self.received else timeout_ms)
            while self.link.check_msg() is not None:
                pass
            return self.tick()
        except (OSError, OTAError):
            self.connected = False
            self.link.close()
            self.retry_at = time.ticks_add(time.ticks_ms(), self._backoff().next_ms())
            return False

    def _backoff(self):
        if self.backoff is None:
            from ota.mqtt import Backoff

            self.backoff = Backoff()
        return self.backoff

    def _connect(self, timeout_ms):
        if self.retry_at is not None:
            wait = time.ticks_diff(self.retry_at, time.ticks_ms())
            if wait > 0:
                time.sleep_ms(min(wait, timeout_ms))
                return False
        self.link.connect()
        self.retry_at = None
        self._backoff().reset()
        self.on_connect()
        return True

    def stop(self):
        """Stop reporting; in own-client mode also say goodbye (`online` = 0) and close."""
        self.events.forget(self._listener)
        if not self.own:
            self.connected = False
            return
        if self.connected:
            try:
                self.link.publish(self.status + "online", b"0", True, 1)
                self.link.disconnect()
            except (OSError, OTAError):
                self.link.close()
        self.connected = False

    # --- messages (callback context: no network calls) ---
    def on_message(self, topic, msg):
        """Give one received message to the transport. Returns True if it was an OTA topic
        (the application should then ignore it). `msg` may be a memoryview of the client's
        buffer: chunks are written to flash before this returns, manifests are copied."""
        if isinstance(topic, str):
            topic = topic.encode()
        prefix = self.prefix
        if prefix and topic.startswith(prefix):
            self._on_chunk(topic[len(prefix):], msg)
            return True
        for level in range(3):
            if topic == self.topics[level]:
                self.blobs[level] = bytes(msg) if len(msg) else None
                self.dirty = True
                return True
            if topic == self.note_topics[level]:
                self.notes[level] = _note(msg)
                return True
        return topic.startswith(self.fw)  # a chunk of a release no longer fetched

    def _on_chunk(self, tail, msg):
        try:
            index = int(tail)
        except ValueError:
            return
        if index in self.wanted:
            del self.wanted[index]
            self.received.append(index)
        if not len(msg):
            return  # pruned while we asked for it
        try:
            self.u.write_chunk(index, msg)
            self.stalls = 0
        except OTAError as exc:
            release = self.manifest and self.manifest.id
            self._on_event("chunk_refused", {"release": release, "index": index, "reason": exc.reason})

    # --- the protocol's work, outside callbacks ---
    def tick(self):
        """Offer a new winning manifest, keep the chunk window full, ask again for late chunks,
        publish queued status. Returns True when the current release has every chunk."""
        if not self.connected:
            return False
        self._flush_status()
        done, self.received = self.received, []
        for index in done:  # before _choose(), which may move on to another release's topics
            self.link.unsubscribe(self._chunk_topic(index))
        self._choose()
        if self.manifest is None:
            return False
        if self.u.complete():
            self._drop_window()
            self._flush_status()
            return True
        self._retry_late()
        if len(self.wanted) < self.window:
            for index in self.u.missing(self.window + len(self.wanted)):
                if len(self.wanted) >= self.window:
                    break
                if index not in self.wanted:
                    self._request(index)
        return False

    def _winner(self):
        for level in (2, 1, 0):
            if self.blobs[level] is not None:
                return self.blobs[level]
        return None

    def _choose(self):
        if not self.dirty:
            return
        self.dirty = False
        blob = self._winner()
        if blob is None:
            # Every level was cleared: stop fetching (the release may be pruned); the updater
            # keeps what it has, should the release come back.
            self._drop_window()
            self.manifest = self.offered = None
            self.prefix = b""
            return
        # A level refused for freshness (docs/FORMAT.md section 5) gives way to the next one, so
        # a stale pin cannot hold the device back (a freeze).
        for level in (2, 1, 0):
            blob = self.blobs[level]
            if blob is None:
                continue
            if blob == self.offered:
                return
            self.offered = blob
            try:
                m = self.u.offer(blob)
                break
            except OTAError as exc:
                if exc.reason not in _FALL_BACK:
                    return  # the updater reported it; a download already under way goes on
        else:
            return
        if m is None:  # the winner is installed already, or failed here before: fetch nothing
            self._drop_window()
            self.manifest = None
            self.prefix = b""
            return
        if self.max_chunk is not None and m.chunk_size > self.max_chunk:
            self.events.emit("rejected", release=m.id, reason="chunk_size")
            return
        if self.manifest is None or m.id != self.manifest.id:
            self._drop_window()
            self.manifest = m
            self.prefix = self.fw + m.id.encode() + b"/"
            self.stalls = 0

    def _chunk_topic(self, index):
        return self.prefix + str(index).encode()

    def _request(self, index):
        # Marked first: the chunk may arrive while subscribe() waits for its SUBACK.
        self.wanted[index] = time.ticks_ms()
        self.link.subscribe(self._chunk_topic(index), 1)

    def _retry_late(self):
        now = time.ticks_ms()
        limit = self.chunk_timeout_ms << min(self.stalls, _MAX_BACKOFF_SHIFT)
        late = [i for i, t in self.wanted.items() if time.ticks_diff(now, t) > limit]
        if not late:
            return
        self.stalls += 1
        if self.own and self.stalls >= STALLS:
            from ota.mqtt import MQTTError

            raise MQTTError("timeout", "no chunks")
        for index in late:
            self._request(index)  # a new SUBSCRIBE makes the broker resend the retained chunk

    def _drop_window(self):
        if self.prefix and self.connected:
            for index in list(self.wanted):
                self.link.unsubscribe(self._chunk_topic(index))
        self.wanted = {}
