"""What a clustered broker does to a release: two RabbitMQ nodes (MQTT plugin, Debian's
rabbitmq-server) clustered on this machine, a release published through node A, and what a
subscriber and a device connected to node B get. Measured, in one run:

1. retained messages: how many of the release's topics (chunks, manifest, fleet manifest) a
   subscriber reads back on A and on B (exact topic filters);
2. plain (not retained) messages: whether a message published on A reaches a subscriber on B;
3. the device path (the `ota` package under the unix port, `ota.service`) on B, then on A;
4. the work-around: the same release published through B as well, and the device on B again;
5. a newer release published through A only: which manifest a subscriber on B then reads.

See docs/SCALING.md for what this means for a fleet.
Usage: python bench/bench_cluster.py
"""
import queue
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import simboard  # noqa: E402

from mpota import broker as host_broker  # noqa: E402
from mpota.cmd_publish import publish_release  # noqa: E402
from mpota.localrabbit import Epmd, RabbitNode  # noqa: E402
from mpota.pki import PKI  # noqa: E402
from mpota.signing import manifest_id  # noqa: E402

STARTED = time.monotonic()
DEVICE_LIMIT_S = 30


def say(text):
    print("[%4.0fs] %s" % (time.monotonic() - STARTED, text), file=sys.stderr, flush=True)


def connect(node):
    return host_broker.Connection(node.host, node.plain_port, timeout=30)


def release_topics(blob, image, chunk_size=4096):
    rid = manifest_id(blob)
    chunks = ["ota/fw/%s/%d" % (rid, i) for i in range(-(-len(image) // chunk_size))]
    return chunks + ["ota/fw/%s/manifest" % rid, "ota/manifest/" + simboard.FLEET]


def retained_count(node, topics):
    with connect(node) as conn:
        return len(conn.retained(topics, settle=1.0, want=topics))


def live_message_crosses(a, b):
    """Does a plain (not retained) message published on `a` reach a subscriber on `b`?"""
    with connect(b) as sub, connect(a) as pub:
        got = queue.Queue()
        sub.client.on_message = lambda c, u, msg: got.put(msg.payload)
        sub.client.subscribe("bench/live", 1)
        time.sleep(1)  # the subscription's binding reaches every node
        pub.wait([pub.publish("bench/live", b"hello", retain=False)])
        try:
            return got.get(timeout=5) == b"hello"
        except queue.Empty:
            return False


def device_steps(work, node, signer, name):
    """The steps (events) a fresh device connected to `node` went through within the limit."""
    board = simboard.Board(Path(work) / name, node.endpoint(False), signer, device_id=name)
    proc = board.run_bare(simboard.UPDATE_SCRIPT % {"limit_ms": DEVICE_LIMIT_S * 1000}, "1024K",
                          timeout=DEVICE_LIMIT_S + 60)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("SEEN")]
    if not lines:
        raise SystemExit("the device on %s failed:\n%s" % (node.name, proc.stderr[-2000:]))
    return lines[-1][4:].split() or ["(nothing)"]


def main():
    signer = simboard.Signer()
    blob, image = signer.release("2.0.0", counter=2, size=64 * 1024)
    newer_blob, newer_image = signer.release("3.0.0", counter=3, size=64 * 1024)
    topics = release_topics(blob, image)
    rows = []
    with tempfile.TemporaryDirectory(prefix="mpota-bench-cluster-") as work:
        epmd = Epmd()
        pki = PKI(Path(work) / "pki")
        nodes = [RabbitNode(Path(work) / n, name=n, pki=pki, epmd=epmd, home=Path(work) / "home") for n in ("ota-a", "ota-b")]
        a, b = nodes
        try:
            say("starting RabbitMQ node %s" % a.name)
            a.start()
            say("starting RabbitMQ node %s and joining it to %s" % (b.name, a.name))
            b.start()
            b.join(a)
            members = a.ctl("rabbitmqctl", "cluster_status")
            if b.name not in members:
                raise SystemExit("the nodes did not cluster:\n" + members)
            version = a.ctl("rabbitmqctl", "version").strip()
            say("publishing a 64 KiB release (16 chunks) through %s" % a.name)
            with connect(a) as conn:
                publish_release(conn, blob, image, ["ota/manifest/" + simboard.FLEET])
            rows.append(("retained topics of the release read on A (published there)",
                         "%d of %d" % (retained_count(a, topics), len(topics))))
            rows.append(("retained topics of the release read on B", "%d of %d" % (retained_count(b, topics), len(topics))))
            rows.append(("plain message published on A reaches a subscriber on B",
                         "yes" if live_message_crosses(a, b) else "no"))
            say("a device on %s, then one on %s (up to %d s each)" % (b.name, a.name, DEVICE_LIMIT_S))
            rows.append(("device on B: steps within %d s" % DEVICE_LIMIT_S, " ".join(device_steps(work, b, signer, "dev-b1"))))
            rows.append(("device on A: steps within %d s" % DEVICE_LIMIT_S, " ".join(device_steps(work, a, signer, "dev-a1"))))
            say("publishing the same release through %s as well" % b.name)
            with connect(b) as conn:
                publish_release(conn, blob, image, ["ota/manifest/" + simboard.FLEET])
            rows.append(("after publishing through B too: topics read on B",
                         "%d of %d" % (retained_count(b, topics), len(topics))))
            rows.append(("after publishing through B too: device on B",
                         " ".join(device_steps(work, b, signer, "dev-b2"))))
            say("publishing a newer release through %s only" % a.name)
            with connect(a) as conn:
                publish_release(conn, newer_blob, newer_image, ["ota/manifest/" + simboard.FLEET])
            fleet_topic = ["ota/manifest/" + simboard.FLEET]
            with connect(b) as conn:
                on_b = conn.retained(fleet_topic, settle=1.0, want=fleet_topic).get(fleet_topic[0])
            with connect(a) as conn:
                on_a = conn.retained(fleet_topic, settle=1.0, want=fleet_topic).get(fleet_topic[0])
            name = {blob: "2.0.0 (older)", newer_blob: "3.0.0 (newer)", None: "none"}
            rows.append(("newer release through A only: fleet manifest read on A", name.get(on_a, "other")))
            rows.append(("newer release through A only: fleet manifest read on B", name.get(on_b, "other")))
        finally:
            for node in reversed(nodes):
                node.stop()
            epmd.stop()
    print("Two clustered RabbitMQ nodes (%s, MQTT plugin, default retained store) on one machine;" % version)
    print("a release published through node A; subscribers use exact topic filters (this broker sends no")
    print("retained messages to wildcard filters). Devices: the ota package under the unix port, ota.service.")
    print()
    for what, value in rows:
        print("  %-62s %s" % (what, value))
    say("done")


if __name__ == "__main__":
    main()
