"""How fast a device receives a release, against the fastest plain subscribers of the same broker.

One 1.5 MiB release (a whole OTA slot), published retained to a local mosquitto, is received by:
- the device path: the `ota` package (as `.mpy`) under the MicroPython unix port, `ota.service`
  with its own `ota.mqtt` client (pipelined: a round of acks and requests in one write, nothing
  waits for an acknowledgement), `ota.transport` and the updater writing into the simulated
  flash slot, until the last chunk is in (then it hashes, verifies and installs). The client is
  the one the service builds from the config, with its receive buffer sized for the chunk (the
  service's default, 4224 bytes, fits 4 KiB chunks only);
- the same with that client lent to the service (`ota.service.start(client=...)`, driven through
  `ota.adapter.Lent` as an application's umqtt-style client is: one waiting call per
  subscription);
- a raw CPython paho subscriber that subscribes once to `<root>/fw/<id>/+` (QoS 1) until it holds
  every chunk message of the release (the image's chunks and the digest table's index and pages:
  the same messages the device must fetch), and `mosquitto_sub` doing the same (timed as a whole
  process: start, connect, receive, exit).
Plain TCP and TLS, 4 KiB and 16 KiB chunks. Printed per case: bytes/s (the image's bytes over
the receiver's time), the ratios device/paho and device/mosquitto_sub (per round, the receivers
of one round against each other; median and range over the rounds), and the bytes the broker sent per receiver divided by the image size
(mosquitto's `$SYS/broker/bytes/sent`: MQTT bytes before TLS, every client, so it includes about
100 bytes a second of the counter's own messages); then the broker log's drop and denial lines.

Usage: python bench/bench_transfer.py [--runs N] [--chunks 4096,16384] [--links plain,tls]
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import simboard  # noqa: E402

import paho.mqtt.client as mqtt  # noqa: E402
from mpota import signing  # noqa: E402
from mpota.cmd_publish import publish_release, release_fields  # noqa: E402
from mpota.localbroker import mosquitto_binary  # noqa: E402

DEVICE_HEAP = "1024K"  # ample: this bench measures speed (bench_memory.py measures the heap)
DEVICE_LIMIT_S = 600

DEVICE_SCRIPT = """
import json, time
T0 = time.ticks_ms()
from ota import events
marks = {}
def on_event(kind, fields):
    now = time.ticks_ms()
    if kind == "offered" and "offered" not in marks:
        marks["offered"] = now
    elif kind == "downloading" and fields.get("progress") == 100:
        marks["complete"] = now
    elif kind == "verified":
        marks["verified"] = now
    elif kind == "rejected":
        marks["rejected"] = fields.get("reason")
events.listen(on_event)
import ota.service
from ota.mqtt import MQTTClient
cfg = json.load(open("ota_config.json"))
b = cfg["broker"]
ctx = None
if b["tls"]:
    import tls
    ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = tls.CERT_REQUIRED
    ctx.load_verify_locations(open(b["ca"], "rb").read())
client = MQTTClient(cfg["device_id"], b["host"], b["port"], keepalive=30, ssl=ctx, server_hostname="localhost",
                    bufsize=%(bufsize)d)
if %(lent)s:
    service = ota.service.start(client=client)
else:
    ota.service._client = lambda cfg: client  # the service's own link, with a buffer for the chunk size
    service = ota.service.start()
try:
    while "verified" not in marks and "rejected" not in marks:
        service.poll(100)
        if time.ticks_diff(time.ticks_ms(), T0) > %(limit_ms)d:
            break
except SystemExit:  # install() resets the board: without the supervisor that ends the process
    pass
print("MARKS " + json.dumps(dict((k, time.ticks_diff(v, T0) if isinstance(v, int) else v) for k, v in marks.items())))
"""


def paho_receive(broker, prefix, count):
    """Seconds from SUBSCRIBE until each of the `count` retained chunk messages (indices 0 to
    count - 1, in whatever order the broker sends them) is in, and their payload bytes."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="raw-" + uuid.uuid4().hex[:8],
                         protocol=mqtt.MQTTv311, clean_session=True)
    if broker.tls:
        client.tls_set(ca_certs=str(broker.pki.ca_file))
    state = {"seen": set(), "bytes": 0, "end": None}
    done, connected = threading.Event(), threading.Event()

    def on_message(c, u, msg):
        tail = msg.topic[len(prefix):]
        if msg.topic.startswith(prefix) and tail.isdigit() and int(tail) < count and msg.retain \
                and int(tail) not in state["seen"]:
            state["seen"].add(int(tail))
            state["bytes"] += len(msg.payload)
            if len(state["seen"]) == count:
                state["end"] = time.perf_counter()
                done.set()

    client.on_message = on_message
    client.on_connect = lambda *a: connected.set()
    client.connect(broker.host, broker.port, keepalive=30)
    client.loop_start()
    try:
        if not connected.wait(10):
            raise RuntimeError("paho did not connect")
        start = time.perf_counter()
        client.subscribe(prefix + "+", 1)
        if not done.wait(120):
            raise RuntimeError("paho received %d of %d chunks" % (len(state["seen"]), count))
        return state["end"] - start, state["bytes"]
    finally:
        client.disconnect()
        client.loop_stop()


def mosquitto_sub_receive(broker, prefix, count):
    """Seconds for a whole `mosquitto_sub` run (start, connect, receive, exit) that takes the
    `count` chunk messages and the release's manifest (`<root>/fw/<id>/manifest`, a few hundred
    bytes), all retained under the wildcard."""
    cmd = [mosquitto_binary("mosquitto_sub"), "-h", broker.host, "-p", str(broker.port), "-t", prefix + "+",
           "-q", "1", "-C", str(count + 1), "-N", "-i", "sub-" + uuid.uuid4().hex[:8]]
    if broker.tls:
        cmd += ["--cafile", str(broker.pki.ca_file)]
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True, timeout=120)
    return time.perf_counter() - start


def device_receive(work, broker, signer, chunk_size, lent):
    """(transfer s, whole-run s, marks) of one device path run on a fresh board."""
    board = simboard.Board(work, broker, signer)
    script = DEVICE_SCRIPT % {"bufsize": chunk_size + 128, "limit_ms": DEVICE_LIMIT_S * 1000, "lent": lent}
    proc = board.run_bare(script, DEVICE_HEAP, timeout=DEVICE_LIMIT_S + 60)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("MARKS ")]
    marks = json.loads(line[-1][6:]) if line else {}
    if "complete" not in marks or "offered" not in marks:
        raise RuntimeError("the device did not receive the release (%s):\n%s\n%s" % (marks, proc.stdout[-2000:],
                                                                                      proc.stderr[-2000:]))
    return (marks["complete"] - marks["offered"]) / 1000, marks["complete"] / 1000, marks


def measured_bytes(counter, action):
    """Run `action()` between two settled readings of the broker's bytes-sent counter."""
    before = counter.settled()
    result = action()
    return result, counter.settled() - before


RECEIVERS = (("paho", "paho (CPython)"), ("sub", "mosquitto_sub"), ("own", "device: transfer"),
             ("whole", "device: whole run"), ("lent", "device, lent client"))


def run_case(work, broker, counter, signer, chunk_size, runs, say):
    """Each round runs paho, mosquitto_sub and the device paths once, one after the other, so
    that whatever else loads the machine weighs on all alike. Returns {receiver: [(seconds,
    broker bytes sent or None), ...]} (one entry per round), the image size and the marks of the
    device's last run."""
    blob, image = signer.release("2.%d.0" % chunk_size, counter=chunk_size, chunk_size=chunk_size)
    with simboard.connection(broker) as conn:
        rid = publish_release(conn, blob, image, ["ota/manifest/" + simboard.FLEET])
    messages = signing.chunk_messages(release_fields(blob, image), image)  # image chunks, table index, pages
    prefix, count = "ota/fw/%s/" % rid, len(messages)
    wire = sum(len(m) for m in messages)
    rounds = {name: [] for name, _ in RECEIVERS}
    own_marks = None
    for n in range(runs):
        say("  round %d of %d: paho, mosquitto_sub, the device path (own client, then lent)" % (n + 1, runs))
        (secs, got), sent = measured_bytes(counter, lambda: paho_receive(broker, prefix, count))
        if got != wire:
            raise RuntimeError("paho received %d bytes of %d" % (got, wire))
        rounds["paho"].append((secs, sent))
        rounds["sub"].append(measured_bytes(counter, lambda: mosquitto_sub_receive(broker, prefix, count)))
        for lent in (False, True):
            folder = Path(work) / ("dev%d-%d-%s" % (chunk_size, n, "lent" if lent else "own"))
            (transfer, whole, marks), sent = measured_bytes(
                counter, lambda: device_receive(folder, broker, signer, chunk_size, lent))
            rounds["lent" if lent else "own"].append((transfer, sent))
            if not lent:
                rounds["whole"].append((whole, None))
                own_marks = marks
    return rounds, len(image), own_marks


def spread(values, fmt):
    """Median, and the range when there is more than one value."""
    med = fmt % statistics.median(values)
    if len(values) < 2:
        return med
    return med + " (" + fmt % min(values) + "-" + fmt % max(values) + ")"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="rounds per case, each receiver once a round (medians printed)")
    ap.add_argument("--chunks", default="4096,16384", help="chunk sizes, comma-separated")
    ap.add_argument("--links", default="plain,tls", help="links to measure, comma-separated: plain, tls")
    opts = ap.parse_args()
    if not set(opts.links.split(",")) <= {"plain", "tls"}:
        ap.error("--links takes plain, tls or plain,tls")
    started = time.monotonic()

    def say(text):
        print("[%4.0fs] %s" % (time.monotonic() - started, text), file=sys.stderr, flush=True)

    signer = simboard.Signer()
    results = []
    drops = {}
    with tempfile.TemporaryDirectory(prefix="mpota-bench-transfer-") as work:
        for link in opts.links.split(","):
            broker = simboard.start_broker(Path(work) / ("broker-" + link), tls=link == "tls")
            counter = simboard.SysCounter(broker)
            try:
                for chunk in (int(c) for c in opts.chunks.split(",")):
                    say("%s, %d-byte chunks:" % (link, chunk))
                    results.append((link, chunk) + run_case(work, broker, counter, signer, chunk, opts.runs, say))
            finally:
                counter.close()
                broker.stop()
                drops[link] = broker.dropped_lines()
    size = results[0][3]
    print("Receiving one retained release of %d bytes (1.5 MiB) from a local mosquitto; medians of %d rounds"
          " (range in brackets), each receiver once a round." % (size, opts.runs))
    print("device: the ota package (.mpy) under the MicroPython unix port, from the manifest's 'offered' to the")
    print("last chunk in the simulated flash slot, through the service's own pipelined client ('whole' also counts")
    print("interpreter start, connect, TLS handshake and the manifest's signature check; 'lent': the same client")
    print("lent to the service, one waiting call per subscription). paho: CPython, one wildcard subscription, SUBSCRIBE to the last")
    print("chunk message in (image chunks and digest table: what the device fetches too).")
    print("mosquitto_sub: the whole process. bytes sent / image: mosquitto's $SYS/broker/bytes/sent per receiver.")
    print()
    print("%-5s %6s  %-19s %-22s %-22s %-22s %s" % ("link", "chunk", "receiver", "MB/s", "÷ paho", "÷ mosquitto_sub",
                                                     "bytes sent/image"))
    for link, chunk, rounds, size, _ in results:
        for name, label in RECEIVERS:
            secs = [s for s, _ in rounds[name]]
            rates = [size / s / 1e6 for s in secs]
            by_paho = [p / s for s, (p, _) in zip(secs, rounds["paho"])]
            by_sub = [p / s for s, (p, _) in zip(secs, rounds["sub"])]
            sent = [b / size for _, b in rounds[name] if b is not None]
            print("%-5s %5dK  %-19s %-22s %-22s %-22s %s" % (
                link, chunk // 1024, label, spread(rates, "%.3f"), spread(by_paho, "%.3f"), spread(by_sub, "%.3f"),
                spread(sent, "%.3f") if sent else ""))
    print()
    for link, lines in drops.items():
        print("mosquitto log, %s: %d lines about dropped or denied messages%s" % (
            link, len(lines), "".join("\n  " + line for line in lines[:5])))
    print()
    print("device verify after the last chunk (hash of the slot + signature):")
    for link, chunk, _, _, m in results:
        if "verified" in m:
            print("  %-5s %5dK  %.2f s" % (link, chunk // 1024, (m["verified"] - m["complete"]) / 1000))
    say("done")


if __name__ == "__main__":
    main()
