"""The heap a device needs for the OTA: the smallest `-X heapsize` of the MicroPython unix port,
in 1 KiB steps, in which each of these passes (the `ota` package as `.mpy`, staged as
`mpota provision` stages a board):

- idle: `ota.service.start()` connects (TLS, and plain), subscribes, and stays connected for
  5 s with a 2 s keepalive (pings), with no release for it;
- full update (TLS, and plain): `ota.service` with its own client receives a 1.5 MiB release
  (4 KiB chunks) into the simulated slot, hashes it, checks the signature and installs (switches
  the boot partition and resets, which ends the bare process);
- service path: the project's boot.py and main.py on a board under the simulator's supervisor
  (boot loop, watchdog, resets): a 1.5 MiB release published before it boots is downloaded,
  installed, booted on trial and confirmed, as the broker's retained state reports.

Each smallest heap is found by bisection, and then confirmed by running the bound and the bound
minus 1 KiB again (each bound tested, never inferred). Printed beside it: the heap the simulator's
own modules hold (`esp32`, `machine`, the flash model; on a board they are firmware and take no
heap), and the application's share (the difference). Figures are for the 64-bit unix port, whose
objects are wider than an ESP32's and whose TLS (mbedtls) allocates from the MicroPython heap,
which on an ESP32 it does not.

It takes a quarter of an hour or more: it says what it is doing as it goes.
Usage: python bench/bench_memory.py [--only idle,update,service]
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import simboard  # noqa: E402

from tools.cmd_publish import publish_release  # noqa: E402

STARTED = time.monotonic()

IDLE_SCRIPT = """
import time
import ota.service
service = ota.service.start()
start = time.ticks_ms()
since = None
while time.ticks_diff(time.ticks_ms(), start) < %(limit_ms)d:
    service.poll(100)
    if service.transport.connected:
        if since is None:
            since = time.ticks_ms()
        elif time.ticks_diff(time.ticks_ms(), since) > 5000:
            print("IDLE OK")
            break
    else:
        since = None
"""

UPDATE_SCRIPT = """
import time
from ota import events
seen = []
events.listen(lambda kind, fields: seen.append(kind) if kind in ("verified", "installing", "rejected") else None)
import ota.service
service = ota.service.start()
start = time.ticks_ms()
try:
    while "rejected" not in seen and time.ticks_diff(time.ticks_ms(), start) < %(limit_ms)d:
        service.poll(100)
except SystemExit:  # install() resets the board: without the supervisor that ends the process
    pass
print("SEEN " + " ".join(seen))
"""

SIM_SHARE_SCRIPT = """
import gc
gc.collect()
before = gc.mem_alloc()
import esp32, machine, sim_flash, sim_otadata, sim_link
running = esp32.Partition(esp32.Partition.RUNNING)
target = running.get_next_update()
gc.collect()
print(gc.mem_alloc() - before)
"""


def say(text):
    print("[%5.0fs] %s" % (time.monotonic() - STARTED, text), file=sys.stderr, flush=True)


def smallest_heap(name, probe, low, high):
    """Bisect for the smallest heap (KiB) where `probe(kib)` passes; `high` must pass and `low`
    fail (both are run). Then the bound and the bound - 1 are run again; if a rerun disagrees
    the search moves on until both agree. Returns the bound."""
    say("%s: the upper end %d KiB must pass" % (name, high))
    if not probe(high):
        raise SystemExit("%s fails even with %d KiB of heap" % (name, high))
    say("%s: the lower end %d KiB must fail" % (name, low))
    if probe(low):
        raise SystemExit("%s passes with %d KiB: lower the search's lower end" % (name, low))
    while high - low > 1:
        mid = (low + high) // 2
        passed = probe(mid)
        say("%s: %d KiB %s  (between %d and %d)" % (name, mid, "passes" if passed else "fails", low, high))
        if passed:
            high = mid
        else:
            low = mid
    for _ in range(8):  # confirmation: the bound passes again and the bound - 1 fails again
        say("%s: confirming %d KiB passes and %d KiB fails" % (name, high, high - 1))
        if not probe(high):
            say("%s: %d KiB failed on its rerun: trying 1 KiB more" % (name, high))
            high += 1
            continue
        if probe(high - 1):
            say("%s: %d KiB passed on its rerun: trying 1 KiB less" % (name, high - 1))
            high -= 1
            continue
        return high
    raise SystemExit("%s: the bound near %d KiB does not settle (a flaky probe)" % (name, high))


def sim_share(work, broker, signer):
    """Bytes the simulator's modules hold once imported with both partitions open."""
    board = simboard.Board(Path(work) / "sim-share", broker, signer)
    proc = board.run_bare(SIM_SHARE_SCRIPT, "1024K", timeout=60)
    if proc.returncode:
        raise SystemExit("measuring the simulator's share failed:\n" + proc.stderr)
    return int(proc.stdout)


class BareProbes:
    """Probes that run one bare board process (no supervisor) per try."""

    def __init__(self, work, broker, signer, limit_s):
        self.work, self.broker, self.signer, self.limit_s = Path(work), broker, signer, limit_s
        self.n = 0

    def _run(self, script, kib, keepalive=30):
        self.n += 1
        board = simboard.Board(self.work / ("probe%d" % self.n), self.broker, self.signer, device_id="mem%d" % self.n,
                               extra_config={"broker": dict(self._broker_config(), keepalive=keepalive)})
        return board.run_bare(script % {"limit_ms": self.limit_s * 1000}, "%dK" % kib, timeout=self.limit_s + 30)

    def _broker_config(self):
        cfg = {"host": self.broker.host, "port": self.broker.port, "tls": self.broker.tls, "ca": "certs/ca.der",
               "cert": None, "key": None, "server_hostname": "localhost", "user": None, "password": None}
        return cfg

    def idle(self, kib):
        return "IDLE OK" in self._run(IDLE_SCRIPT, kib, keepalive=2).stdout

    def update(self, kib):
        out = self._run(UPDATE_SCRIPT, kib).stdout
        return any(line.startswith("SEEN ") and "installing" in line.split() for line in out.splitlines())


class ServiceProbe:
    """One board under the supervisor per try: publish → download → install → trial → confirmed."""

    def __init__(self, work, broker, signer, limit_s):
        self.work, self.broker, self.signer, self.limit_s = Path(work), broker, signer, limit_s
        self.n = 0

    def __call__(self, kib):
        self.n += 1
        device = "svc%d" % self.n
        folder = self.work / ("service%d" % self.n)
        board = simboard.Board(folder, self.broker, self.signer, device_id=device,
                               extra_config={"wdt_ms": 5000, "confirm_within_ms": 120000})
        proc = board.start_supervised("%dK" % kib, folder / "console.log")
        topic = "ota/status/%s/state" % device
        try:
            with simboard.connection(self.broker) as conn:
                deadline = time.monotonic() + self.limit_s
                while time.monotonic() < deadline and proc.poll() is None:
                    state = conn.retained([topic], settle=0.3, want=[topic]).get(topic)
                    if state:
                        state = json.loads(state)
                        if state.get("version") == "2.0.0" and state.get("state") == "idle":
                            return True
                    time.sleep(0.5)
            return False
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


def publish(broker, signer):
    blob, image = signer.release("2.0.0", counter=2)
    with simboard.connection(broker) as conn:
        publish_release(conn, blob, image, ["ota/manifest/" + simboard.FLEET])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="idle,update,service", help="which measurements, comma-separated")
    ap.add_argument("--limit", type=int, default=180, help="seconds one try may take before it counts as failed")
    opts = ap.parse_args()
    only = set(opts.only.split(","))
    signer = simboard.Signer()
    rows = []
    with tempfile.TemporaryDirectory(prefix="mpota-bench-memory-") as work:
        brokers = {link: simboard.start_broker(Path(work) / ("broker-" + link), tls=link == "tls")
                   for link in ("plain", "tls")}
        try:
            say("measuring the simulator's own modules")
            sim = sim_share(work, brokers["tls"], signer)
            if "idle" in only:
                for link in ("tls", "plain"):
                    probes = BareProbes(Path(work) / ("idle-" + link), brokers[link], signer, opts.limit)
                    rows.append(("idle, connected (%s)" % link, smallest_heap("idle " + link, probes.idle, 8, 256)))
            if "update" in only or "service" in only:
                say("publishing a 1.5 MiB release (4 KiB chunks) to both brokers")
                for broker in brokers.values():
                    publish(broker, signer)
            if "update" in only:
                for link in ("tls", "plain"):
                    probes = BareProbes(Path(work) / ("update-" + link), brokers[link], signer, opts.limit)
                    rows.append(("full 1.5 MiB update (%s)" % link,
                                 smallest_heap("update " + link, probes.update, 16, 512)))
            if "service" in only:
                probe = ServiceProbe(Path(work) / "service", brokers["tls"], signer, opts.limit)
                rows.append(("service path, publish -> confirmed (tls)", smallest_heap("service", probe, 32, 512)))
        finally:
            for broker in brokers.values():
                broker.stop()
    print("Smallest -X heapsize (1 KiB steps, bound and bound - 1 KiB each run again) on the 64-bit unix port;")
    print("the ota package as .mpy. The simulator's modules (esp32, machine, flash model) hold %.1f KiB of it;" % (sim / 1024))
    print("on a board they are firmware and hold none, so the application's share is the difference.")
    print()
    print("%-44s %12s %12s %14s" % ("what", "smallest", "simulator", "application"))
    for what, kib in rows:
        print("%-44s %9d KiB %8.1f KiB %10.1f KiB" % (what, kib, sim / 1024, kib - sim / 1024))
    say("done")


if __name__ == "__main__":
    main()
