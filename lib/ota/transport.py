"""Device side of docs/PROTOCOL.md: choose the winning manifest, pull chunks through a bounded,
adapting window of retained-topic subscriptions, publish status.

Own connection (`ota.mqtt.MQTTClient`):

    t = Transport(client, updater, device="dev-1", fleet="esp32-generic", group="canary")
    while True:
        if t.poll(1000):           # connects, reconnects with backoff, fetches; True: all chunks in
            updater.finish()       # then install() when permitted

`poll(timeout_ms)` returns within its budget whatever the broker does (see `ota.mqtt`); each
round's acknowledgements, unsubscriptions, subscriptions and status reports go out in one write
and nothing waits for an acknowledgement.

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

WINDOW = const(16)  # most chunk topics subscribed at once: all the broker ever holds for this device
FIRST_WINDOW = const(4)  # the window after each connection; one more per chunk on time, halved when late
CHUNK_TIMEOUT_MS = const(5000)  # then the chunk is requested again
STALLS = const(3)  # rounds of late chunks before the link is declared dead
SETTLE_MS = const(30000)  # a connection up this long was useful: the reconnect backoff starts over
STRIKES = const(3)  # failed downloads or refused chunks of one release, then it is given up
HOLD_MS = const(10000)  # pause after a release's first strike; doubles with each further strike
_TOPICS_PER_PACKET = const(8)  # topics in one (UN)SUBSCRIBE: AWS IoT Core's limit
_MAX_BACKOFF_SHIFT = const(4)
_MAX_PENDING = const(16)
_RESET_ACK_MS = const(2000)  # longest wait for the broker to acknowledge the last events before a reset
_MAX_NOTE = const(200)  # a rollout note is a few dozen bytes; anything longer is ignored
_CONNACK = const(0x20)
_SUBACK = const(0x90)

_LEVELS = ("fleet", "group", "device")
_FALL_BACK = ("no_timestamp", "stale", "replayed", "wrong_level", "mismatch")  # freshness refusals of one level


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


def chunk_index(tail):
    """The chunk index a topic tail names: 1 to 5 ASCII digits, no sign, space or leading zero
    (the publisher's exact spelling); -1 for anything else."""
    n = len(tail)
    if not 0 < n <= 5 or (tail[0] == 0x30 and n > 1):
        return -1
    value = 0
    for c in tail:
        if not 0x30 <= c <= 0x39:
            return -1
        value = value * 10 + c - 0x30
    return value


class Transport:
    """One device's OTA conversation over MQTT. `link` has `publish(topic, msg, retain, qos)`,
    `subscribe(topic, qos)` and `unsubscribe(topic)`; with `poll()` it must be an MQTTClient.
    `window` bounds the chunk subscriptions (so what the broker queues for the device)."""

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
        self.named = None  # the last note that named a report's rollout: kept when notes are withdrawn
        self.last_kind = None  # the last event reported, for the retained state
        self.fw = (root + "/fw/").encode()
        self.status = root + "/status/" + device + "/"
        self.max_window = max(1, window)
        self.window = min(FIRST_WINDOW, self.max_window)
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
        self.up_at = time.ticks_ms()  # of the last CONNACK
        self.settled = True  # the backoff was reset for this connection (or there is none)
        self.must = 0  # packet id of the manifest SUBSCRIBE: refusing it fails the connection
        self.subscribed = False  # its SUBACK is in, and with it the retained notes before it
        self.strike_id = None  # the release the strikes are about
        self.strikes = 0
        self.hold_until = time.ticks_ms()
        self.pipe = hasattr(link, "queue_publish")  # ota.mqtt: pipelined, else one call at a time
        self.opened = False  # poll() opened the link (the CONNACK may still be on its way)
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

    # --- the link: pipelined on an ota.mqtt client, one waiting call at a time on others ---
    def _publish(self, topic, msg, retain):
        if self.pipe:
            self.link.queue_publish(topic, msg, retain, 1)
        else:
            self.link.publish(topic, msg, retain, 1)

    def _subscribe(self, topics):
        """Returns the packet id of the (last) SUBSCRIBE on our own client."""
        pid = 0
        if self.pipe:
            for i in range(0, len(topics), _TOPICS_PER_PACKET):
                pid = self.link.queue_subscribe(topics[i:i + _TOPICS_PER_PACKET], 1)
        else:
            for topic in topics:
                self.link.subscribe(topic, 1)
        return pid

    def _unsubscribe(self, topics):
        if self.pipe:
            for i in range(0, len(topics), _TOPICS_PER_PACKET):
                self.link.queue_unsubscribe(topics[i:i + _TOPICS_PER_PACKET])
        else:
            for topic in topics:
                self.link.unsubscribe(topic)

    # --- status ---
    def rollout(self, release):
        """The rollout id the winning level's note gives for `release` (any release when None).
        Before any manifest is in (just connected: the notes come first), the most specific note
        about `release` names it, so the first reports of a boot (a rollback, say) name their
        rollout even if it ends before the manifests arrive. Once a rollout ends (halted or done,
        its note withdrawn), reports about the release it delivered still name it: the note last
        used for that release is kept."""
        levels: tuple = (2, 1, 0) if release is not None else ()  # no manifest in yet: any note about it
        for level in (2, 1, 0):
            if self.blobs[level] is not None:
                levels = (level,)  # the winning level's note only
                break
        for level in levels:
            note = self.notes[level]
            if note and (release is None or note[1] == release):
                self.named = note
                return note[0]
        named = self.named
        return named[0] if named and release is not None and named[1] == release else None

    def last_will(self):
        """(topic, msg, retain, qos) for the client's last will: `online` goes to 0."""
        return self.status + "online", b"0", True, 1

    def _on_event(self, kind, fields):
        if kind == "confirmed":
            self.offered = None  # a release refused during the trial may be taken now
            self.dirty = True
        elif kind == "rejected" and fields.get("reason") in ("bad_digest", "invalid_image"):
            self._strike(fields.get("release"))  # the download is thrown away: wait before the next
        if len(self.pending) >= _MAX_PENDING:
            self.pending.pop(0)
        self.pending.append((kind, fields))
        if kind in ("rebooting", "trial_failed") and self.connected and self.subscribed:
            # The reset follows at once and takes queued events with it: see them acknowledged.
            try:
                self._flush_status()
                if self.pipe:
                    self.link.settle(_RESET_ACK_MS)
            except (OSError, OTAError):
                pass  # the link is gone: the next boot reports the outcome

    def _publish_state(self):
        state = dict(self.events.state())
        state["device"] = self.device
        state["rollout"] = self.rollout(state.get("release"))
        state["event"] = self.last_kind
        self._publish(self.status + "state", json.dumps(state), True)

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
            self._publish(self.status + "event", text, False)
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
        self.window = min(FIRST_WINDOW, self.max_window)
        self._publish(self.status + "online", b"1", True)
        self._publish_state()
        # Notes first: their retained messages are in before the manifests, so the first report
        # about a release already names its rollout. A broker whose ACL has no rollout notes
        # refuses them: that costs the rollout ids and nothing else.
        notes = [t for t in self.note_topics if t]
        if self.pipe:
            self._subscribe(notes)
        else:
            for topic in notes:
                try:
                    self.link.subscribe(topic, 1)
                except OTAError as exc:
                    if exc.reason != "sub_refused":
                        raise
        self.subscribed = not self.pipe  # a lent client's subscribe() has waited already
        self.must = self._subscribe([t for t in self.topics if t])

    def on_disconnect(self):
        self.connected = False

    def start(self):
        """Own-client mode: install the callbacks and last will; `poll()` connects."""
        self.own = True
        link = self.link
        link.set_callback(self.on_message)
        if self.pipe:
            link.set_oversize_callback(self._on_oversize)
            link.set_ack_callback(self._on_ack)
        link.set_last_will(*self.last_will())

    def poll(self, timeout_ms=100):
        """Own-client mode: connect if needed (one attempt, then backoff), handle incoming
        messages and do the protocol's work for `timeout_ms`, returning within that budget
        (plus one socket connect when one is due). True once every chunk is in."""
        if not self.own:
            self.start()
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        try:
            if not self.opened and not self._open(timeout_ms):
                return False
            while True:
                self._receive(deadline)
                done = self.tick()
                if self.pipe:
                    self.link.flush()
                if done or time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                    return done
        except (OSError, OTAError):
            self.connected = self.opened = False
            self.link.close()
            self.retry_at = time.ticks_add(time.ticks_ms(), self._backoff().next_ms())
            return False

    def _receive(self, deadline):
        """Wait for the next packet until `deadline`, then take everything already there."""
        link = self.link
        op = link.wait_msg(max(0, time.ticks_diff(deadline, time.ticks_ms())))
        while op is not None:
            if op == _CONNACK:
                self._up()
            if time.ticks_diff(deadline, time.ticks_ms()) < 0:
                break
            op = link.check_msg()
        if not self.settled and time.ticks_diff(time.ticks_ms(), self.up_at) >= SETTLE_MS:
            self.settled = True
            self._backoff().reset()

    def _backoff(self):
        if self.backoff is None:
            from ota.mqtt import Backoff

            self.backoff = Backoff()
        return self.backoff

    def _open(self, timeout_ms):
        if self.retry_at is not None:
            wait = time.ticks_diff(self.retry_at, time.ticks_ms())
            if wait > 0:
                time.sleep_ms(min(wait, timeout_ms))
                return False
        self.retry_at = None
        self.connected = False
        self.opened = True
        if self.pipe:
            self.link.open()  # the CONNACK comes through poll's receive loop
        else:
            self.link.connect()
            self._up()
        return True

    def _up(self):
        self.up_at = time.ticks_ms()
        self.settled = False
        self.on_connect()

    def _on_ack(self, kind, pid, granted):
        if kind == _SUBACK and pid == self.must:
            if not granted:
                from ota.mqtt import MQTTError

                raise MQTTError("sub_refused", "manifest topics")
            self.subscribed = True

    def stop(self):
        """Stop reporting; in own-client mode also say goodbye (`online` = 0) and close."""
        self.events.forget(self._listener)
        if not self.own:
            self.connected = False
            return
        if self.connected:
            try:
                self._publish(self.status + "online", b"0", True)
                self.link.disconnect()
            except (OSError, OTAError):
                self.link.close()
        self.connected = self.opened = False

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
        index = chunk_index(tail)
        if index < 0:
            return
        if not len(msg):  # pruned while we asked for it
            self._arrived(index)
            return
        try:
            self.u.write_chunk(index, msg)
        except OTAError as exc:
            # Never asked again at once: the release pauses (a broker that keeps sending a bad
            # chunk must not get a request per round). A round's bad chunks are one strike.
            release = self.manifest and self.manifest.release
            self._on_event("chunk_refused", {"release": release, "index": index, "reason": exc.reason})
            if not self._held():
                self._strike(release)
            return
        self._arrived(index)
        self.stalls = 0

    def _arrived(self, index):
        if index in self.wanted:
            del self.wanted[index]
            self.received.append(index)
            if self.window < self.max_window:
                self.window += 1

    def _on_oversize(self, topic, size):
        """A chunk too big for the receive buffer was thrown away: the broker holds a bad one."""
        if topic and self.prefix and topic.startswith(self.prefix):
            release = self.manifest and self.manifest.release
            self._on_event("chunk_refused", {"release": release, "index": chunk_index(topic[len(self.prefix):]),
                                             "reason": "bad_chunk"})
            if not self._held():
                self._strike(release)

    def _strike(self, release):
        """One more failure that the release's data caused: pause it, longer each time, and
        give it up after STRIKES (until its manifest changes or the device restarts)."""
        if release is None:
            return
        if release != self.strike_id:
            self.strike_id, self.strikes = release, 0
        self.strikes += 1
        self.hold_until = time.ticks_add(time.ticks_ms(), HOLD_MS << (self.strikes - 1))
        if self.strikes == STRIKES:
            self.events.emit("rejected", release=release, reason="retry_limit")

    def _held(self):
        if self.manifest is None or self.manifest.id != self.strike_id:
            return False
        return self.strikes >= STRIKES or time.ticks_diff(self.hold_until, time.ticks_ms()) > 0

    # --- the protocol's work, outside callbacks ---
    def tick(self):
        """Offer a new winning manifest, keep the chunk window full, ask again for late chunks,
        publish queued status. Returns True when the current release has every chunk.
        Waits for the manifests' SUBACK: the first report then names its rollout, and the
        first offer sees every level's manifest (they follow the SUBACK in the same read)."""
        if not self.connected or not self.subscribed:
            return False
        self._flush_status()
        done, self.received = self.received, []
        if done:  # before _choose(), which may move on to another release's topics
            self._unsubscribe([self._chunk_topic(i) for i in done])
        self._choose()
        if self.manifest is None:
            return False
        if self.u.complete():
            self._drop_window()
            self._flush_status()
            return True
        if self._held():
            self._drop_window()
            return False
        self._retry_late()
        self._fill_window()
        return False

    def _fill_window(self):
        room = self.window - len(self.wanted)
        if room <= 0:
            return
        new = []
        for index in self.u.missing(self.window + len(self.wanted)):
            if index not in self.wanted:
                new.append(index)
                if len(new) >= room:
                    break
        self._request(new)

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
            self.events.emit("rejected", release=m.release, reason="chunk_size")
            return
        if self.manifest is None or m.id != self.manifest.id:
            self._drop_window()
            self.manifest = m
            self.prefix = self.fw + m.id.encode() + b"/"
            self.stalls = 0

    def _chunk_topic(self, index):
        return self.prefix + str(index).encode()

    def _request(self, indices):
        if not indices:
            return
        # Marked first: a chunk may arrive while a lent client's subscribe() waits for its SUBACK.
        now = time.ticks_ms()
        for index in indices:
            self.wanted[index] = now
        self._subscribe([self._chunk_topic(i) for i in indices])

    def _retry_late(self):
        now = time.ticks_ms()
        limit = self.chunk_timeout_ms << min(self.stalls, _MAX_BACKOFF_SHIFT)
        late = [i for i, t in self.wanted.items() if time.ticks_diff(now, t) > limit]
        if not late:
            return
        self.stalls += 1
        self.window = max(1, self.window // 2)
        if self.own and self.stalls >= STALLS:
            from ota.mqtt import MQTTError

            raise MQTTError("timeout", "no chunks")
        self._request(late)  # a new SUBSCRIBE makes the broker resend the retained chunk

    def _drop_window(self):
        if self.prefix and self.connected and self.wanted:
            self._unsubscribe([self._chunk_topic(i) for i in self.wanted])
        self.wanted = {}
