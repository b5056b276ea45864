"""The broker as host commands see it: connection options (address, TLS, credentials), a paho
connection that publishes with acknowledgements and reads retained messages, and the topic names
of docs/PROTOCOL.md (the host's one copy of them)."""
import os
import queue
import re
import ssl
import threading
import time
import uuid

import paho.mqtt.client as mqtt

from mpota.cli import CliError

DEFAULT_ROOT = "ota"
NAME_RE = re.compile(r"[^/+#\x00]{1,64}\Z")


# --- topics (docs/PROTOCOL.md) ----------------------------------------------------------------

def _name(value, what):
    if not NAME_RE.match(value or ""):
        raise CliError("%s %r: 1 to 64 characters without / + # or NUL" % (what, value))
    return value


def target_topic(root, fleet, group=None, device=None):
    """The manifest topic for a whole fleet, one group or one device."""
    base = "%s/manifest/%s" % (root, _name(fleet, "fleet"))
    if group and device:
        raise CliError("target a group or a device, not both")
    if group:
        return base + "/group/" + _name(group, "group")
    if device:
        return base + "/device/" + _name(device, "device")
    return base


def note_topic(root, fleet, device):
    """Where the rollout note for one device lives, beside its manifest pin."""
    return "%s/rollout/%s/device/%s" % (root, fleet, device)


def release_manifest_topic(root, release):
    return "%s/fw/%s/manifest" % (root, release)


def chunk_topic(root, release, index):
    return "%s/fw/%s/%d" % (root, release, index)


def status_topic(root, device, leaf):
    return "%s/status/%s/%s" % (root, device, leaf)


# --- command-line options ---------------------------------------------------------------------

def add_arguments(parser):
    group = parser.add_argument_group("broker")
    group.add_argument("--broker", default="127.0.0.1", metavar="HOST[:PORT]",
                       help="broker address (port 1883, or 8883 with TLS)")
    group.add_argument("--cafile", help="CA certificate (PEM) that signed the broker's certificate: turns TLS on")
    group.add_argument("--cert", help="client certificate (PEM), for brokers that require one")
    group.add_argument("--key", help="private key (PEM) of --cert")
    group.add_argument("--username", help="MQTT user name")
    group.add_argument("--password", help="MQTT password (default: $MPOTA_PASSWORD)")
    group.add_argument("--root", default=DEFAULT_ROOT, help="first topic level of every OTA topic (default: ota)")


def from_args(args):
    host, _, port = args.broker.rpartition(":") if ":" in args.broker else (args.broker, "", "")
    tls = bool(args.cafile)
    if (args.cert or args.key) and not (args.cert and args.key and tls):
        raise CliError("a client certificate needs --cert, --key and --cafile together")
    try:
        port = int(port) if port else (8883 if tls else 1883)
    except ValueError:
        raise CliError("--broker: bad port in %r" % args.broker) from None
    _name(args.root, "root")
    for option, path in (("--cafile", args.cafile), ("--cert", args.cert), ("--key", args.key)):
        if path and not os.access(path, os.R_OK):
            raise CliError("%s %s: %s" % (option, path, "cannot be read" if os.path.exists(path) else
                                          "no such file (a fleet's CA, certificates and keys come from "
                                          "`mpota fleet init` and `mpota fleet add`)"))
    password = args.password if args.password is not None else os.environ.get("MPOTA_PASSWORD")
    return Connection(host, port, cafile=args.cafile, certfile=args.cert, keyfile=args.key,
                      username=args.username, password=password)


# --- the connection ---------------------------------------------------------------------------

NO_WILDCARDS = ("this broker sends no retained message to a wildcard subscription (RabbitMQ's MQTT plugin does "
                "not), so %s cannot be listed here: pass the fleet folder (--fleet-dir, or $MPOTA_FLEET) to read "
                "its topics one by one")


PROBE_STALE_S = 600  # a probe message older than this was left by a tool that died mid-probe


def _recent(sent, now):
    """True when a probe's payload (its send time) is under PROBE_STALE_S old."""
    try:
        return now - int(sent) < PROBE_STALE_S
    except ValueError:
        return False


class Connection:
    """A paho client run on its own thread; use as a context manager."""

    def __init__(self, host, port, *, cafile=None, certfile=None, keyfile=None, username=None, password=None,
                 client_id=None, timeout=10.0):
        self.host, self.port, self.timeout = host, port, timeout
        self.client_id = client_id or "mpota-" + uuid.uuid4().hex[:12]
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                  protocol=mqtt.MQTTv311, clean_session=True, reconnect_on_failure=False)
        if cafile:
            try:
                self.client.tls_set(ca_certs=cafile, certfile=certfile, keyfile=keyfile, cert_reqs=ssl.CERT_REQUIRED,
                                    tls_version=ssl.PROTOCOL_TLS_CLIENT)
            except ssl.SSLError as exc:
                raise CliError("the TLS files do not load (%s): --cafile must be a PEM CA certificate, --cert "
                               "and --key a PEM certificate and its unencrypted key" % exc.reason) from None
        if username is not None:
            self.client.username_pw_set(username, password)
        self.messages = queue.Queue()
        self._wildcards = None  # does the broker send retained messages to wildcard subscriptions?
        self._connected = threading.Event()
        self._suback = threading.Event()
        self._rc = None
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, msg: self.messages.put(msg)
        self.client.on_subscribe = lambda *a: self._suback.set()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self._rc = reason_code
        self._connected.set()

    def __enter__(self):
        try:
            self.client.connect(self.host, self.port, keepalive=30)
        except (OSError, ssl.SSLError) as exc:
            raise CliError("cannot reach the broker at %s:%d: %s" % (self.host, self.port, exc)) from None
        self.client.loop_start()
        if not self._connected.wait(self.timeout):
            self.close()
            raise CliError("the broker at %s:%d did not answer: if it requires client certificates, pass "
                           "--cert and --key (from `mpota fleet init`/`fleet add`)" % (self.host, self.port))
        if self._rc is None or self._rc.is_failure:
            self.close()
            raise CliError("the broker refused the connection (%s): check --username/--password or the certificate" % self._rc)
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()

    def publish(self, topic, payload, retain=True, qos=1):
        """Queue one publish; returns paho's MessageInfo (`wait_for_publish`)."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise CliError("publish to %s failed: %s" % (topic, mqtt.error_string(info.rc)))
        return info

    def wait(self, infos, on_done=None):
        """Wait until every publish in `infos` is acknowledged; `on_done(n)` after each."""
        for info in infos:
            info.wait_for_publish(self.timeout)
            if not info.is_published():
                raise CliError("the broker did not acknowledge a publish within %ss (link lost?)" % self.timeout)
            if on_done:
                on_done(1)

    def retained(self, filters, settle=0.5, want=None):
        """{topic: payload} of the retained messages matching `filters`, gathered until the
        broker has been quiet for `settle` seconds (or every topic in `want` has arrived)."""
        while not self.messages.empty():  # left over from an earlier read
            self.messages.get_nowait()
        self._suback.clear()
        self.client.subscribe([(f, 1) for f in filters])
        if not self._suback.wait(self.timeout):
            raise CliError("the broker did not answer a subscription")
        found = {}
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if want is not None and all(t in found for t in want):
                break
            try:
                msg = self.messages.get(timeout=settle)
            except queue.Empty:
                break
            if msg.retain:
                found[msg.topic] = msg.payload
        self.client.unsubscribe(list(filters))
        return {t: p for t, p in found.items() if p}

    def wildcard_retained(self, root):
        """True when the broker sends retained messages to wildcard subscriptions (mosquitto does;
        RabbitMQ's MQTT plugin does not). Asked once per connection: a retained probe message under
        `<root>/probe/` (its payload: when it was sent), read through a wildcard, then cleared. The
        probes seen there that a tool which died mid-probe left behind (sent over PROBE_STALE_S
        ago) are cleared too."""
        if self._wildcards is None:
            topic = "%s/probe/%s" % (root, self.client_id)
            now = int(time.time())
            self.wait([self.publish(topic, b"%d" % now)])
            seen = {}
            try:
                seen = self.retained(["%s/probe/+" % root], settle=0.2)  # all of them: stale ones too
                self._wildcards = topic in seen
            finally:
                stale = [t for t, sent in seen.items() if t != topic and not _recent(sent, now)]
                self.wait([self.publish(t, b"") for t in [topic] + stale])
        return self._wildcards

    def retained_under(self, root, filters, exact, what, settle=0.5):
        """{topic: payload} of the retained messages under the wildcard `filters`. On a broker that
        sends none to wildcard subscriptions: of the topics `exact()` lists instead (a fleet
        folder's; asked only then), or, with no `exact`, a CliError saying that `what` cannot be
        read there."""
        if self.wildcard_retained(root):
            return self.retained(filters, settle=settle)
        if exact is None:
            raise CliError(NO_WILDCARDS % what)
        topics = exact()
        return self.retained(topics, settle=settle, want=topics) if topics else {}
