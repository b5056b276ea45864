"""How fast a device receives a release, against the fastest plain subscribers of the same broker.

One 1.5 MiB release (a whole OTA slot), published retained to a local mosquitto, is received by:
- the device path: the `ota` package (as `.mpy`) under the MicroPython unix port, its own MQTT
  client, `ota.transport` and the updater writing into the simulated flash slot, started by
  `ota.service`, until the last chunk is in (then it hashes, verifies and installs);
- a raw CPython paho subscriber that subscribes once to `<root>/fw/<id>/+` (QoS 1) and counts
  the retained chunks, and `mosquitto_sub` doing the same (timed as a whole process: start,
  connect, receive, exit).
Plain TCP and TLS, 4 KiB and 16 KiB chunks. Printed per case: bytes/s, the ratio device/paho,
and the bytes the broker sent per receiver divided by the image size (mosquitto's
`$SYS/broker/bytes/sent`: MQTT bytes before TLS, every client, so it includes about 100 bytes a
second of the counter's own messages).

Usage: python bench/bench_transfer.py [--runs N] [--device-runs N] [--chunks 4096,16384] [--links plain,tls]
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
from tools.cmd_publish import publish_release  # noqa: E402
from tools.localbroker import mosquitto_binary  # noqa: E402

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
service = ota.service.start(client=client)
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
    """Seconds from SUBSCRIBE to the last of `count` retained chunks, and the payload bytes."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="raw-" + uuid.uuid4().hex[:8],
                         protocol=mqtt.MQTTv311, clean_session=True)
    if broker.tls:
        client.tls_set(ca_certs=str(broker.pki.ca_file))
    state = {"n": 0, "bytes": 0, "end": None}
    done, connected = threading.Event(), threading.Event()

    def on_message(c, u, msg):
        if msg.topic.startswith(prefix) and msg.topic[len(prefix):].isdigit() and msg.retain:
            state["n"] += 1
            state["bytes"] += len(msg.payload)
            if state["n"] == count:
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
            raise RuntimeError("paho received %d of %d chunks" % (state["n"], count))
        return state["end"] - start, state["bytes"]
    finally:
        client.disconnect()
        client.loop_stop()


def mosquitto_sub_receive(broker, prefix, count):
    """Seconds for a whole `mosquitto_sub` run (start, connect, receive, exit) that takes the
    `count` chunks and the release's manifest (`<root>/fw/<id>/manifest`, a few hundred bytes)."""
    cmd = [mosquitto_binary("mosquitto_sub"), "-h", broker.host, "-p", str(broker.port), "-t", prefix + "+",
           "-q", "1", "-C", str(count + 1), "-N", "-i", "sub-" + uuid.uuid4().hex[:8]]
    if broker.tls:
        cmd += ["--cafile", str(broker.pki.ca_file)]
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True, timeout=120)
    return time.perf_counter() - start


def device_receive(work, broker, signer, chunk_size):
    """(transfer s, whole-run s, marks) of one device path run on a fresh board."""
    board = simboard.Board(work, broker, signer)
    script = DEVICE_SCRIPT % {"bufsize": chunk_size + 128, "limit_ms": DEVICE_LIMIT_S * 1000}
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


def run_case(work, broker, counter, signer, chunk_size, runs, device_runs, say):
    blob, image = signer.release("2.%d.0" % chunk_size, counter=chunk_size, chunk_size=chunk_size)
    with simboard.connection(broker) as conn:
        rid = publish_release(conn, blob, image, ["ota/manifest/" + simboard.FLEET])
    prefix, count, size = "ota/fw/%s/" % rid, -(-len(image) // chunk_size), len(image)
    say("  paho subscriber x%d" % runs)
    paho = []
    for _ in range(runs):
        (secs, got), sent = measured_bytes(counter, lambda: paho_receive(broker, prefix, count))
        if got != size:
            raise RuntimeError("paho received %d bytes of %d" % (got, size))
        paho.append((secs, sent))
    say("  mosquitto_sub x%d" % runs)
    subs = [measured_bytes(counter, lambda: mosquitto_sub_receive(broker, prefix, count)) for _ in range(runs)]
    say("  device path x%d (the ota package under the unix port into the simulated slot)" % device_runs)
    device = []
    for n in range(device_runs):
        (transfer, whole, marks), sent = measured_bytes(
            counter, lambda: device_receive(Path(work) / ("dev%d-%d" % (chunk_size, n)), broker, signer, chunk_size))
        device.append((transfer, whole, sent, marks))
    paho_s = statistics.median(s for s, _ in paho)
    return {
        "size": size,
        "paho": (size / paho_s, statistics.median(b for _, b in paho) / size),
        "mosquitto_sub": (size / statistics.median(s for s, _ in subs), statistics.median(b for _, b in subs) / size),
        "device": (size / statistics.median(d[0] for d in device), statistics.median(d[2] for d in device) / size),
        "device_whole": (size / statistics.median(d[1] for d in device), None),
        "paho_rate": size / paho_s,
        "sub_rate": size / statistics.median(s for s, _ in subs),
        "marks": device[-1][3],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="runs of each raw subscriber per case (the median is printed)")
    ap.add_argument("--device-runs", type=int, default=1, help="device path runs per case (the median is printed)")
    ap.add_argument("--chunks", default="4096,16384", help="chunk sizes, comma-separated")
    ap.add_argument("--links", default="plain,tls", help="plain, tls or both")
    opts = ap.parse_args()
    started = time.monotonic()

    def say(text):
        print("[%4.0fs] %s" % (time.monotonic() - started, text), file=sys.stderr, flush=True)

    signer = simboard.Signer()
    results = []
    with tempfile.TemporaryDirectory(prefix="mpota-bench-transfer-") as work:
        for link in opts.links.split(","):
            broker = simboard.start_broker(Path(work) / ("broker-" + link), tls=link == "tls")
            counter = simboard.SysCounter(broker)
            try:
                for chunk in (int(c) for c in opts.chunks.split(",")):
                    say("%s, %d-byte chunks:" % (link, chunk))
                    results.append((link, chunk, run_case(work, broker, counter, signer, chunk, opts.runs, opts.device_runs, say)))
            finally:
                counter.close()
                broker.stop()
    size = results[0][2]["size"]
    print("Receiving one retained release of %d bytes (1.5 MiB) from a local mosquitto; medians of %d raw and %d"
          " device run(s)." % (size, opts.runs, opts.device_runs))
    print("device: the ota package (.mpy) under the MicroPython unix port, from the manifest's 'offered' to the")
    print("last chunk in the simulated flash slot ('whole' also counts interpreter start, connect, TLS handshake")
    print("and the manifest's signature check). paho: CPython, one wildcard subscription, SUBSCRIBE to last chunk.")
    print("mosquitto_sub: the whole process. bytes sent / image: mosquitto's $SYS/broker/bytes/sent per receiver.")
    print()
    print("%-5s %6s  %-19s %9s %8s %16s %16s" % ("link", "chunk", "receiver", "MB/s", "÷ paho", "÷ mosquitto_sub",
                                                  "bytes sent/image"))
    for link, chunk, r in results:
        for name, label in (("paho", "paho (CPython)"), ("mosquitto_sub", "mosquitto_sub"),
                            ("device", "device: transfer"), ("device_whole", "device: whole run")):
            rate, sent = r[name]
            print("%-5s %5dK  %-19s %9.3f %8.4f %16.4f %16s" % (
                link, chunk // 1024, label, rate / 1e6, rate / r["paho_rate"], rate / r["sub_rate"],
                "%.3f" % sent if sent is not None else ""))
    print()
    print("device verify after the last chunk (hash of the slot + signature):")
    for link, chunk, r in results:
        m = r["marks"]
        if "verified" in m:
            print("  %-5s %5dK  %.2f s" % (link, chunk // 1024, (m["verified"] - m["complete"]) / 1000))
    say("done")


if __name__ == "__main__":
    main()
