"""The heap a device needs for the OTA: the smallest `-X heapsize` of the MicroPython unix port,
in 1 KiB steps, in which each of these passes, with the `ota` package as `.mpy` deployed both
ways `mpota provision` stages a board: in a ROMFS partition (`--romfs`: bytecode runs in place
from flash) and in lib/ on the filesystem (each module's bytecode copied into the heap); and, on
request, frozen into the unix port (`--deploy frozen --frozen-port PORT`: a build of the same port
with `FROZEN_MANIFEST` naming the package and umqtt, as a product freezes it with manifest.py;
bytecode and names are then in the binary, as they are in a board's flash):

- idle: after `ota.boot()` (as boot.py runs it), `ota.service.start()` connects (TLS, and
  plain), subscribes, and stays connected for 5 s with a 2 s keepalive (pings), with no release
  for it;
- idle with a lent client: the same, but the service runs on the application's own umqtt.simple
  client (`ota.service.start(client=...)`, as the README shows); less the idle baseline below,
  this is what the OTA adds to an application that is connected already;
- full update (TLS, and plain): `ota.service` with its own client receives a 1.5 MiB release
  (4 KiB chunks) into the simulated slot, hashes it, checks the signature and installs (switches
  the boot partition and resets, which ends the bare process);
- service path: the project's boot.py and main.py on a board under the simulator's supervisor
  (boot loop, watchdog, resets): a 1.5 MiB release published before it boots is downloaded,
  installed, booted on trial and confirmed, as the broker's retained state reports.

A try fails when the process ends with an error, when the service reports running out of memory
(a MemoryError it caught: `fault` no_memory, after which a board would go on and retry), or when
it has not passed within the time limit (the service path: an error on the board's console; a
MemoryError its service catches is retried, as on a board). Each smallest heap is found by bisection, and then confirmed: it passes
three runs in a row and 1 KiB less fails at least one of three (each bound tested, never inferred). Printed beside it: the heap the simulator's
own modules hold (`esp32`, `machine`, the flash model, the image check `set_boot` runs, the
`socket` wrapper, the ROMFS mount; on a board they are firmware and take no heap; a bare run loads
them first and then collects the heap, as the esp32 port's `_boot.py` ends), and the
application's share (the difference). The service path runs under the supervisor, whose VM gets
`--heapsize` plus its allowance for the simulator (SIM_HEAP_ALLOWANCE): its row gives that whole
VM heap, and subtracts what such a board holds when its main.py starts (the simulator, its port
start-up, and the LittleFS mount, which is the board's own: about 0.8 KB kinder). Also measured in the same run: what each module of the package holds once
imported, and what one TLS connection holds in the heap when a bare client opens it.

Baselines, bisected the same way in the same run, with umqtt.simple (the package index's, fetched
by `make setup`), the smallest MQTT client there is, as `.mpy` where the package is (frozen beside
it in a frozen port), connected over the same link (TLS verifying the broker, through a six-line
`ussl` in the script: umqtt.simple 1.3.4 imports that name, this port has `tls`):
- under idle: connected, subscribed to the fleet's manifest topic and pinging for 5 s; it keeps
  no receive buffer, no state and no reconnection;
- under the full update: the update a script pasted from a forum makes, every chunk of the same
  retained release written into the next OTA slot as it arrives, then `set_boot`; no signature,
  digest, resume, status or trial.
They are floors, not alternatives: neither could update a board safely.

TLS: on this port (a standard unix build) mbedtls allocates its session and record buffers with
the C library's calloc, not from the MicroPython heap (extmod/mbedtls/mbedtls_config_common.h
routes them to m_tracked_calloc only under MICROPY_MBEDTLS_CONFIG_BARE_METAL, which
ports/unix/mbedtls/mbedtls_config_port.h sets for the coverage build alone). On an ESP32 they
come from the ESP-IDF heap too (the port links ESP-IDF's mbedtls, ports/esp32/boards/sdkconfig.base:
CONFIG_MBEDTLS_DEFAULT_MEM_ALLOC). On rp2 (Pico W) MICROPY_MBEDTLS_CONFIG_BARE_METAL is set
(ports/rp2/mbedtls/mbedtls_config_port.h): there they are in the MicroPython heap, on top of the
figures here. Objects on this 64-bit port are wider than on a 32-bit board.

It takes 5 to 30 minutes: it says what it is doing as it goes.
Usage: python bench/bench_memory.py [--only idle,update,service] [--links tls,plain]
       [--deploy romfs,fs,frozen] [--frozen-port PORT] [--bounds LOW,HIGH] [--limit S]
"""
import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import simboard  # noqa: E402
from simhost import supervisor  # noqa: E402

from mpota.cmd_publish import publish_release  # noqa: E402

STARTED = time.monotonic()
RELIABLE = 3  # runs in a row a bound must pass (and the bound - 1 KiB fail one of)

# The service started as boot.py and main.py start it: `ota.boot()` first, the boot's bookkeeping.
OTA_BOOTED = simboard.FIRMWARE_FIRST + """import time
import ota
ota.boot()
from ota import events
faults = []
events.listen(lambda kind, fields: faults.append(kind) if fields.get("error") == "no_memory" else None)
import ota.service
"""
# Passes once the service has stayed connected for 5 s (its keepalive pings included).
CONNECTED_5S = """start = time.ticks_ms()
since = None
while not faults and time.ticks_diff(time.ticks_ms(), start) < %(limit_ms)d:
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
IDLE_SCRIPT = OTA_BOOTED + "service = ota.service.start()\n" + CONNECTED_5S

# What both baselines start from: the smallest MQTT client there is, umqtt.simple (from the
# package index, `make setup` fetches it), deployed as the package is, connected the same way
# (TLS verifying the broker, or plain).
UMQTT_CLIENT = """import json, sys, time, tls


class ussl:  # what umqtt.simple 1.3.4 imports, done with the `tls` module this port has
    def wrap_socket(sock, cadata, server_hostname):
        ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
        ctx.verify_mode = tls.CERT_REQUIRED
        ctx.load_verify_locations(cadata)
        return ctx.wrap_socket(sock, server_hostname=server_hostname)


sys.modules["ussl"] = ussl
from umqtt.simple import MQTTClient
with open("ota_config.json") as f:
    cfg = json.load(f)
b = cfg["broker"]
params = {}
if b["tls"]:
    with open(b["ca"], "rb") as f:
        params = {"cadata": f.read(), "server_hostname": b["server_hostname"]}
client = MQTTClient(cfg["device_id"], b["host"], b["port"], keepalive=%(keepalive)d, ssl=b["tls"], ssl_params=params)
del cfg, b, params
"""
UMQTT_CONNECTED = simboard.FIRMWARE_FIRST + UMQTT_CLIENT + "client.connect()\n"
# Idle with the application's umqtt.simple client lent to the service (README: "An application
# with its own MQTT client"): what the OTA adds to an application that is connected already is
# this case less the idle baseline.
LENT_IDLE_SCRIPT = OTA_BOOTED + UMQTT_CLIENT + "service = ota.service.start(client=client)\n" + CONNECTED_5S
# The floor under the idle figure: subscribed to the fleet's manifest topic, pinging.
BASELINE_SCRIPT = UMQTT_CONNECTED + """client.set_callback(lambda topic, msg: None)
client.subscribe(b"ota/manifest/%(fleet)s", 1)
start = pinged = time.ticks_ms()
while time.ticks_diff(time.ticks_ms(), start) < 5000:
    client.check_msg()
    if time.ticks_diff(time.ticks_ms(), pinged) > 1000:
        client.ping()
        pinged = time.ticks_ms()
    time.sleep_ms(100)
print("IDLE OK")
"""
# The floor under the full update: an update as a script pasted from a forum does it, with
# umqtt.simple: every chunk of the release written into the next OTA slot as it comes (the
# 3-argument writeblocks erases its 4 KiB sector first), then set_boot. No signature, no digest,
# no resume, no status, no trial: only the transfer into flash the service also does.
BASELINE_UPDATE_SCRIPT = UMQTT_CONNECTED + """import esp32
part = esp32.Partition(esp32.Partition.RUNNING).get_next_update()
got = 0


def chunk(topic, msg):
    global got
    i = int(topic[topic.rfind(b"/") + 1:])
    if i < %(chunks)d:  # after the payload come the digest table's index and pages
        part.writeblocks(i, msg)
        got += 1


client.set_callback(chunk)
client.subscribe(b"ota/fw/%(release)s/+", 1)
start = time.ticks_ms()
while got < %(chunks)d and time.ticks_diff(time.ticks_ms(), start) < %(limit_ms)d:
    if client.check_msg() is None:
        time.sleep_ms(1)
if got == %(chunks)d:
    part.set_boot()
    print("UPDATE OK")
"""
DEVICE_LIBS = simboard.ROOT / "build" / "devicelibs"  # where `make setup` puts umqtt.simple

SIM_SHARE_SCRIPT = """
import gc
gc.collect()
before = gc.mem_alloc()
""" + simboard.FIRMWARE_FIRST + """
gc.collect()
print(gc.mem_alloc() - before)
"""

# What each module of the package holds once imported, in the order the service loads them
# (a module's imports count with it; the first qstr pools that outgrow count where they grow).
MODULES_SCRIPT = simboard.FIRMWARE_FIRST + """
import gc
import select, json, hashlib, struct, time
for name in %(modules)r:
    gc.collect()
    before = gc.mem_alloc()
    __import__(name)
    gc.collect()
    print(name, gc.mem_alloc() - before)
"""
MODULES = ("ota.service", "ota.config", "ota.mqtt", "ota.transport", "ota.updater", "ota.freshness", "ota.encoding",
           "ota.bundle")

# One TLS connection to the broker by a bare client, as ota.service makes it (context, CA, handshake,
# one MQTT CONNECT answered): the heap it holds once open. mbedtls's own buffers are not in it.
TLS_SCRIPT = """
import gc, json, socket, tls
cfg = json.load(open("ota_config.json"))["broker"]
gc.collect()
before = gc.mem_alloc()
with open(cfg["ca"], "rb") as f:
    ca = f.read()
ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
ctx.verify_mode = tls.CERT_REQUIRED
ctx.load_verify_locations(ca)
del ca
sock = socket.socket()
sock.connect(socket.getaddrinfo(cfg["host"], cfg["port"])[0][-1])
conn = ctx.wrap_socket(sock, server_hostname=cfg["server_hostname"])
conn.write(b"\\x10\\x0c\\x00\\x04MQTT\\x04\\x02\\x00\\x1e\\x00\\x00")
assert conn.read(4) == b" \\x02\\x00\\x00"
gc.collect()
print(gc.mem_alloc() - before)
conn.close()
"""


def say(text):
    print("[%5.0fs] %s" % (time.monotonic() - STARTED, text), file=sys.stderr, flush=True)


def smallest_heap(name, probe, low, high):
    """Bisect for the smallest heap (KiB) where `probe(kib)` passes; `high` must pass and `low`
    fail (both are run). Near the bound the outcome depends on how the heap fragments, which
    network timing changes from run to run, so the bound is then confirmed: it must pass
    RELIABLE runs in a row, and the bound - 1 must fail at least one of as many; the bound
    moves until both hold. Returns the bound."""
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
    for _ in range(12):
        say("%s: confirming %d KiB passes %d runs in a row and %d KiB fails one" % (name, high, RELIABLE, high - 1))
        if not _reliably(probe, high):
            say("%s: %d KiB failed a rerun: trying 1 KiB more" % (name, high))
            high += 1
            continue
        if _reliably(probe, high - 1):
            say("%s: %d KiB passed %d runs in a row: trying 1 KiB less" % (name, high - 1, RELIABLE))
            high -= 1
            continue
        return high
    raise SystemExit("%s: the bound near %d KiB does not settle" % (name, high))


def _reliably(probe, kib):
    """True when `probe(kib)` passes RELIABLE runs in a row (it stops at the first failure)."""
    return all(probe(kib) for _ in range(RELIABLE))


def measure(work, name, broker, signer, script, deploy="fs"):
    """The lines a measuring script prints, run bare on a board of its own with 1 MiB of heap."""
    board = simboard.Board(Path(work) / name, broker, signer, extra_config={"broker": BareProbes.broker_config(broker)},
                           deploy=deploy)
    proc = board.run_bare(script, "1024K", timeout=60)
    if proc.returncode:
        raise SystemExit("measuring %s failed:\n%s" % (name, proc.stderr))
    return proc.stdout.split()


def sim_share(work, broker, signer, deploy):
    """Bytes the simulator's modules hold once imported with both partitions open (the image
    check `set_boot` runs included: `esp32` loads it up front, as firmware is there from boot),
    and the ROMFS mounted on a board that has one."""
    return int(measure(work, "sim-share-" + deploy, broker, signer, SIM_SHARE_SCRIPT, deploy)[0])


def supervised_share(work, broker, signer, deploy):
    """Bytes a board under the supervisor holds when its main.py starts, with an empty boot.py:
    the simulator's modules and its port start-up (firmware on a board), and the LittleFS mount
    of "/" (the board's own, about 0.8 KB: counted here with the simulator, so the service path's
    application share is that much kinder). The VM's heap is `--heapsize` + the supervisor's
    allowance for the simulator (SIM_HEAP_ALLOWANCE)."""
    folder = Path(work) / ("supervised-share-" + deploy)
    folder.mkdir(parents=True)
    (folder / "boot.py").write_text("")
    (folder / "main.py").write_text("import gc\ngc.collect()\nprint('SHARE', gc.mem_alloc())\n")
    board = simboard.Board(folder / "board", broker, signer, main=folder / "main.py", boot=folder / "boot.py",
                           deploy=deploy)
    proc = board.start_supervised("1000K", folder / "console.log")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for line in (folder / "console.log").read_text(errors="replace").splitlines():
                if line.startswith("SHARE "):
                    return int(line.split()[1])
            time.sleep(0.2)
        raise SystemExit("the supervised board did not report its start-up heap:\n"
                         + (folder / "console.log").read_text(errors="replace"))
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class BareProbes:
    """Probes that run one bare board process (no supervisor) per try."""

    def __init__(self, work, broker, signer, limit_s, deploy, release=None):
        self.work, self.broker, self.signer, self.limit_s, self.deploy = Path(work), broker, signer, limit_s, deploy
        self.release = release  # the id of the release the broker holds, for the baseline update
        self.n = 0

    def _run(self, script, kib, keepalive=30, umqtt=False):
        self.n += 1
        board = simboard.Board(self.work / ("probe%d" % self.n), self.broker, self.signer, device_id="mem%d" % self.n,
                               extra_config={"broker": dict(self.broker_config(self.broker), keepalive=keepalive)},
                               deploy=self.deploy)
        if umqtt:
            if not (DEVICE_LIBS / "umqtt" / "simple.py").exists():
                raise SystemExit("umqtt.simple is missing from %s: run `make setup`" % DEVICE_LIBS)
            board.add_library(DEVICE_LIBS / "umqtt")
        values = {"limit_ms": self.limit_s * 1000, "fleet": simboard.FLEET, "keepalive": keepalive,
                  "release": self.release, "chunks": simboard.SLOT_SIZE // 4096}
        return board.run_bare(script % values, "%dK" % kib, timeout=self.limit_s + 30)

    @staticmethod
    def broker_config(broker):
        return {"host": broker.host, "port": broker.port, "tls": broker.tls, "ca": "certs/ca.der", "cert": None,
                "key": None, "server_hostname": "localhost", "user": None, "password": None}

    def idle(self, kib):
        return "IDLE OK" in self._run(IDLE_SCRIPT, kib, keepalive=2).stdout

    def lent_idle(self, kib):
        return "IDLE OK" in self._run(LENT_IDLE_SCRIPT, kib, keepalive=2, umqtt=True).stdout

    def baseline(self, kib):
        return "IDLE OK" in self._run(BASELINE_SCRIPT, kib, keepalive=2, umqtt=True).stdout

    def baseline_update(self, kib):
        return "UPDATE OK" in self._run(BASELINE_UPDATE_SCRIPT, kib, umqtt=True).stdout

    def update(self, kib):
        out = self._run(simboard.UPDATE_SCRIPT, kib).stdout
        return any(line.startswith("SEEN ") and "installing" in line.split() for line in out.splitlines())


class ServiceProbe:
    """One board under the supervisor per try: publish → download → install → trial → confirmed.
    A traceback on the board's console (a MemoryError, mostly) fails the try at once: the board
    would only sit idle or reboot."""

    def __init__(self, work, broker, signer, limit_s, deploy):
        self.work, self.broker, self.signer, self.limit_s, self.deploy = Path(work), broker, signer, limit_s, deploy
        self.n = 0

    def __call__(self, kib):
        self.n += 1
        device = "svc%d" % self.n
        folder = self.work / ("service%d" % self.n)
        board = simboard.Board(folder, self.broker, self.signer, device_id=device,
                               extra_config={"wdt_ms": 5000, "confirm_within_ms": 120000}, deploy=self.deploy)
        proc = board.start_supervised("%dK" % kib, folder / "console.log")
        topic = "ota/status/%s/state" % device
        console = folder / "console.log"
        try:
            with simboard.connection(self.broker) as conn:
                deadline = time.monotonic() + self.limit_s
                while time.monotonic() < deadline and proc.poll() is None:
                    if b"Traceback (most recent call last)" in console.read_bytes():
                        return False
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
    """Publish a 1.5 MiB release of 4 KiB chunks for the fleet; returns its id."""
    blob, image = signer.release("2.0.0", counter=2)
    with simboard.connection(broker) as conn:
        return publish_release(conn, blob, image, ["ota/manifest/" + simboard.FLEET])


def measure_deployment(work, brokers, signer, opts, kind, only, sim, rows, releases):
    """The cases in `only` for one deployment of the package, whose simulator share is `sim`;
    `releases`: the id of the release each link's broker holds."""
    links = opts.links.split(",")
    bounds = tuple(int(k) for k in opts.bounds.split(",")) if opts.bounds else None
    work = Path(work) / kind / "-".join(sorted(only))
    if "idle" in only:
        for link in links:
            probes = BareProbes(work / ("idle-" + link), brokers[link], signer, opts.limit, kind)
            rows.append(("idle, connected (%s)" % link, kind, sim,
                         smallest_heap("%s idle %s" % (kind, link), probes.idle, *(bounds or (8, 256)))))
            rows.append(("idle, lent umqtt.simple client (%s)" % link, kind, sim,
                         smallest_heap("%s lent idle %s" % (kind, link), probes.lent_idle, *(bounds or (8, 256)))))
            rows.append(("  baseline: umqtt.simple connected (%s)" % link, kind, sim,
                         smallest_heap("%s umqtt.simple idle %s" % (kind, link), probes.baseline,
                                       *(bounds or (8, 256)))))
    if "update" in only:
        for link in links:
            probes = BareProbes(work / ("update-" + link), brokers[link], signer, opts.limit, kind,
                                release=releases[link])
            rows.append(("full 1.5 MiB update (%s)" % link, kind, sim,
                         smallest_heap("%s update %s" % (kind, link), probes.update, *(bounds or (16, 512)))))
            rows.append(("  baseline: umqtt.simple into the slot (%s)" % link, kind, sim,
                         smallest_heap("%s umqtt.simple update %s" % (kind, link), probes.baseline_update,
                                       *(bounds or (8, 512)))))
    if "service" in only:
        probe = ServiceProbe(work / "service", brokers["tls"], signer, opts.limit, kind)
        allowance = supervisor.SIM_HEAP_ALLOWANCE // 1024
        started = supervised_share(work, brokers["tls"], signer, kind)
        rows.append(("service path, publish -> confirmed (tls)", kind, started,
                     allowance + smallest_heap("%s service" % kind, probe, *(bounds or (16, 512)))))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="idle,update,service", help="which measurements, comma-separated")
    ap.add_argument("--links", default="tls,plain", help="idle and full update over these links, comma-separated")
    ap.add_argument("--deploy", default="romfs,fs", help="where the package is: romfs (a ROMFS partition, run in "
                                                         "place), fs (lib/ on the filesystem) and/or frozen (into "
                                                         "the port --frozen-port names), comma-separated")
    ap.add_argument("--frozen-port", type=Path, help="for --deploy frozen: a build of the venv's unix port with "
                    "`ota` and umqtt.simple frozen in (bench/README.md says how); the other deployments run the "
                    "venv's")
    ap.add_argument("--bounds", help="LOW,HIGH KiB for every search instead of its default (LOW must fail, "
                                     "HIGH pass: both are run): quicker when the answer is roughly known")
    ap.add_argument("--limit", type=int, default=180, help="seconds one try may take before it counts as failed")
    opts = ap.parse_args()
    deploys = opts.deploy.split(",")
    if set(deploys) - set(simboard.DEPLOYS):
        ap.error("--deploy: each of %s" % ", ".join(simboard.DEPLOYS))
    if "frozen" in deploys:
        if not opts.frozen_port:
            ap.error("--deploy frozen needs --frozen-port")
        simboard.FROZEN_PORT = opts.frozen_port.resolve()
        simboard.frozen_modules(["ota.service", "ota.updater", "umqtt.simple"])
        if "service" in opts.only.split(","):
            ap.error("--deploy frozen measures idle and update: the supervisor lays out the firmware "
                     "image's own frozen modules (--only idle,update)")
    signer = simboard.Signer()
    rows, modules = [], {}
    with tempfile.TemporaryDirectory(prefix="mpota-bench-memory-") as work:
        brokers = {link: simboard.start_broker(Path(work) / ("broker-" + link), tls=link == "tls")
                   for link in ("plain", "tls")}
        try:
            say("measuring what one TLS connection holds")
            tls = int(measure(work, "tls", brokers["tls"], signer, TLS_SCRIPT)[0])
            sims = {}
            for kind in deploys:
                say("%s: measuring the simulator's own modules and each module of the package" % kind)
                sims[kind] = sim_share(work, brokers["tls"], signer, kind)
                modules[kind] = measure(work, "modules-" + kind, brokers["tls"], signer,
                                        MODULES_SCRIPT % {"modules": MODULES}, kind)
            only = set(opts.only.split(","))
            releases = {}
            for cases in ({"idle"} & only, {"update", "service"} & only):  # idle before any release is out
                if cases and "idle" not in cases:
                    say("publishing a 1.5 MiB release (4 KiB chunks) to both brokers")
                    releases = {link: publish(broker, signer) for link, broker in brokers.items()}
                for kind in deploys if cases else ():
                    measure_deployment(work, brokers, signer, opts, kind, cases, sims[kind], rows,
                                       releases)
        finally:
            for broker in brokers.values():
                broker.stop()
    print("Smallest -X heapsize (1 KiB steps; it passed %d runs in a row, 1 KiB less failed one of %d) on the"
          % (RELIABLE, RELIABLE))
    print("64-bit unix port")
    print("(the service path: the supervised VM's whole heap, --heapsize + %d KiB allowance);" % (supervisor.SIM_HEAP_ALLOWANCE // 1024))
    print("the ota package as .mpy, either in a ROMFS partition (romfs: bytecode runs in place from flash) or")
    print("in lib/ on the filesystem (fs: each module's bytecode is copied into the heap).")
    if simboard.FROZEN_PORT:
        print("frozen: the package and umqtt.simple frozen into a build of the same port (bytecode and names")
        print("in the binary, as in a board's flash): %s" % simboard.FROZEN_PORT)
    print("The simulator's modules (esp32, machine, flash model, the image check set_boot runs, socket")
    print("wrapper, the ROMFS mount) are firmware on a board and hold no heap there, so the application's")
    print("share is the difference.")
    print()
    print("%-44s %6s %12s %12s %14s" % ("what", "where", "smallest", "simulator", "application"))
    ratios = []
    for what, kind, sim_bytes, kib in rows:
        print("%-44s %6s %9d KiB %8.1f KiB %10.1f KiB" % (what, kind, kib, sim_bytes / 1024, kib - sim_bytes / 1024))
    floor = None  # (deployment, application's share) of the baseline below the rows being read
    for what, kind, sim_bytes, kib in reversed(rows):  # each baseline follows the cases it is the floor of
        share = kib - sim_bytes / 1024
        if what.strip().startswith("baseline"):
            floor = (kind, share)
        elif floor and floor[0] == kind:  # the service path, last of its deployment, has none below it
            ratios.insert(0, "%s %s: the application's share is %.2f x umqtt.simple's, %.1f KiB above it"
                          % (what, kind, share / floor[1], share - floor[1]))
    if ratios:
        print("\n".join(ratios))
    print()
    print("TLS: mbedtls's buffers are outside the MicroPython heap on this port (and on an ESP32); what one")
    print("TLS connection holds in the heap, opened by a bare client in this run: %.1f KiB (in every TLS row" % (tls / 1024))
    print("above). On a Pico W mbedtls allocates from the MicroPython heap: add its session buffers there.")
    for kind, lines in modules.items():
        print()
        print("Heap each module holds once imported (%s; in the service's loading order; its own imports count" % kind)
        print("with it, and so does a qstr pool that grows on the way):")
        for name, size in zip(lines[::2], lines[1::2]):
            print("  %-16s %6.1f KiB" % (name, int(size) / 1024))
    say("done")


if __name__ == "__main__":
    main()
