"""How long the update service keeps an asyncio application from running, during a whole update.

A simulated board (unix port, a real mosquitto on 127.0.0.1) runs an application whose
heartbeat task sleeps 1 ms at a time and records the longest gap between its wake-ups, by the
update's state at that moment, while a release of SIZE bytes is downloaded, checked (SHA-256 of
the slot and the signature) and installed. The installation waits for the heartbeat to report
(the permission callback), so the final check is measured too.

Three ways to run the service beside the heartbeat, same release, a fresh broker each:
- `ota.aservice.run()`: the asyncio service (one `poll(0)` per round, bounded by the chunk window);
- baseline: the synchronous `ota.service` polled from a task, `updates.poll()` with its default
  100 ms wait, then `await asyncio.sleep_ms(0)`: what an application does without aservice;
- `ota.aservice.run(client=...)` with a lent umqtt.simple client (from the package index, `make
  setup`), to compare a lent client's download time with the service's own client.

    .venv/bin/python bench/bench_async.py [--size BYTES]

Figures are for the 64-bit unix port on the host: flash writes are file writes, far faster than
an ESP32's flash erase, and the SHA-256 runs on the host CPU; on a board both stretches grow."""
import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "host")]

from e2e_env import Fleet  # noqa: E402
from plugin_sim import SimDevice  # noqa: E402
from mpota.localbroker import LocalBroker  # noqa: E402

MODES = ("aservice", "baseline", "lent umqtt.simple")
DEVICE_LIBS = ROOT / "build" / "devicelibs"  # `make setup` fetches umqtt.simple there

APP = """
import asyncio, json, time
import ota.aservice, ota.service
from ota import events
import fw

MODE = %(mode)r
worst = {}
granted = [False]


def permission():
    return granted[0]


async def heartbeat():
    last = time.ticks_ms()
    while True:
        await asyncio.sleep_ms(1)
        now = time.ticks_ms()
        state = events.state()["state"]
        gap = time.ticks_diff(now, last)
        if gap > worst.get(state, -1):
            worst[state] = gap
        if state == "downloading" and "started" not in worst:
            worst["started"] = now
        last = now
        if state == "awaiting_permission" and not granted[0]:  # checked, not installed: report first
            print("BENCH", json.dumps({"gaps": worst, "download_ms": time.ticks_diff(now, worst.get("started", now))}))
            granted[0] = True


async def baseline():
    updates = ota.service.start(checks=[fw.healthy], permission=permission)
    while True:
        updates.poll()
        await asyncio.sleep_ms(0)


def lent_client():
    from umqtt.simple import MQTTClient

    cfg = json.load(open("ota_config.json"))
    return MQTTClient(cfg["device_id"], cfg["broker"]["host"], cfg["broker"]["port"], keepalive=10)


async def main():
    fw.start()
    asyncio.create_task(heartbeat())
    if MODE == "aservice":
        await ota.aservice.run(checks=[fw.healthy], permission=permission)
    elif MODE == "lent umqtt.simple":
        await ota.aservice.run(checks=[fw.healthy], permission=permission, client=lent_client())
    else:
        await baseline()

asyncio.run(main())
"""


def measure(work, mode, size):
    """{"gaps": {state: longest gap in ms}, "download_ms": ...} for one update of `size` bytes."""
    name = "bench-%d" % MODES.index(mode)
    broker = LocalBroker(Path(work) / name).start()
    try:
        fleet = Fleet(Path(work) / name, broker,
                      lambda image, heapsize="100K": SimDevice(Path(work) / name / "board", image, None, heapsize))
        board = fleet.board(name, app="main.py", extra={"install": "now"})
        board.write_files({"main.py": APP % {"mode": mode}})
        if mode == MODES[2]:
            if not (DEVICE_LIBS / "umqtt" / "simple.py").exists():
                raise SystemExit("umqtt.simple is missing from %s: run `make setup`" % DEVICE_LIBS)
            shutil.copytree(DEVICE_LIBS / "umqtt", board.fs / "lib" / "umqtt")
        board.start()
        fleet.wait_state(lambda s: (s.get(name) or {}).get("online") is True, timeout=60)
        blob, image = fleet.signer.release("2.0.0", {"fw": "def start():\n    pass\n\ndef healthy():\n    return True\n"},
                                           counter=2, size=size)
        proc = fleet.publish(blob, image)
        if proc.returncode:
            raise SystemExit(proc.stderr)
        board.wait_for("^BENCH ", timeout=600)
        line = next(l for l in board.console.splitlines() if l.startswith("BENCH "))
        fleet.wait_state(lambda s: (s.get(name) or {}).get("version") == "2.0.0", timeout=120)
        board.power_cut()
        return json.loads(line[len("BENCH "):])
    finally:
        broker.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512 * 1024, help="release size in bytes (default 512 KiB)")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="mpota-bench-async-") as work:
        for mode in MODES:
            print("%s: one update of %d KiB on a simulated board, heartbeat every 1 ms ..." % (mode, args.size // 1024),
                  flush=True)
            start = time.monotonic()
            results[mode] = measure(work, mode, args.size)
            print("  done in %.1f s" % (time.monotonic() - start), flush=True)
    print("\nlongest stretch without the application running (ms), by the update's state; ratio: to baseline")
    states = sorted(set(g for r in results.values() for g in r["gaps"]) - {"started"})
    print("%-22s %10s %10s %8s %20s %8s" % ("state", "aservice", "baseline", "ratio", "lent umqtt.simple", "ratio"))
    rows = [(state, [results[m]["gaps"].get(state) for m in MODES]) for state in states]
    rows.append(("download (ms)", [results[m]["download_ms"] for m in MODES]))
    for label, (a, b, lent) in rows:
        ratio = lambda x: "%.2f" % (x / b) if x is not None and b else "-"  # noqa: E731
        print("%-22s %10s %10s %8s %20s %8s" % (label, a, b, ratio(a), lent, ratio(lent)))
    print("(awaiting_permission: the gap that holds the final SHA-256 and signature check)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
