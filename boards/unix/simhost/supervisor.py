"""The board around one simulated ESP32: power, reset lines, the watchdog, the boot loop.

Each boot runs the bootloader on the flash file, lays out the loaded image's frozen modules
(the board's own, then the image's) and starts the MicroPython unix port, which mounts them and
the board's LittleFS filesystem (boards/unix/modules/sim_port.py). Files put in the host's
filesystem folder are an inbox: the next boot moves them onto the board. The device reports
over a pipe (see boards/unix/modules/sim_link.py): `wdt <ms>`, `feed`, `reset`,
`deepsleep <ms>|forever`, `soft`, `powercut <kind> <partition> <addr>`, `op <kind> <partition>`.
The supervisor enforces the watchdog from outside and performs the resets. It and the device
share one process group, so killing that group is a power cut.

OTASIM_TEAR_PLAN="<boot> <op> <seed>" (environment) plans a power cut inside flash operation
<op> of boot <boot> (bootloader first, then the VM); OTASIM_TRACE_FLASH=1 prints each boot's
flash operations as runs of `partition:kind*count`.
"""
import ctypes
import hashlib
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import simhost
from simhost import bootloader
import sim_flash
from mpota import fwimage

PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5
CAUSES = {PWRON_RESET: "PWRON_RESET", HARD_RESET: "HARD_RESET", WDT_RESET: "WDT_RESET",
          DEEPSLEEP_RESET: "DEEPSLEEP_RESET", SOFT_RESET: "SOFT_RESET"}
ESPRESSIF_OUI = bytes.fromhex("240ac4")
# Heap added to --heapsize for the simulator's own modules (esp32, machine, sim_*), which a board
# keeps in ROM. They hold more than this (bench/bench_memory.py measures what a supervised board
# holds when its main.py starts), so the device code gets less than --heapsize: harder, never
# kinder (the LittleFS mount, about 0.8 KB, is the board's and is not covered).
SIM_HEAP_ALLOWANCE = 24 * 1024
ROM_PIECE = 65536  # one placeholder string of the romfs reservation (Linux allows 128 KiB each)


def vm_heap(heapsize):
    """The unix port's -X heapsize for a board with `heapsize` ("100K", "2M" or bytes)."""
    text = str(heapsize).strip().upper()
    scale = {"K": 1024, "M": 1024 * 1024}.get(text[-1:], 1)
    return int(text.rstrip("KM")) * scale + SIM_HEAP_ALLOWANCE


def micropython_binary():
    """The unix port next to this Python (the project venv), else the one on PATH."""
    found = Path(sys.executable).parent / "micropython"
    if found.exists():
        return str(found)
    other = shutil.which("micropython")
    if not other:
        raise FileNotFoundError("the micropython unix port is missing: run `make setup`")
    return other


def default_uid(flash_path):
    """A MAC-like id, stable for the device's flash file."""
    digest = hashlib.sha256(str(Path(flash_path).resolve()).encode()).digest()
    return ESPRESSIF_OUI + digest[:3]


def save_flash(path, data):
    """Write a whole flash file sector by sector. One big write makes the host kernel cache the
    file in large folios, and every later 256-byte write of the device then costs several times
    as much (a host cost the chip does not have)."""
    with open(path, "wb") as f:
        for at in range(0, len(data), sim_flash.SECTOR):
            f.write(data[at:at + sim_flash.SECTOR])


def new_device(flash_path, fs_dir, image, table_path=simhost.PARTITIONS, romfs=None):
    """A factory-fresh board: erased flash with `image` in ota_0 (as `esptool write-flash`
    puts it), blank otadata, and an empty filesystem folder (none if fs_dir is None). `romfs`,
    a ROMFS image, goes into the table's "romfs" partition (as `mpremote romfs deploy` puts it)."""
    table = sim_flash.load_table(str(table_path))
    slots = sim_flash.ota_slots(table)
    if len(image) > slots[0][4]:
        raise ValueError("image of %d bytes does not fit %s (%d bytes)" % (len(image), slots[0][0], slots[0][4]))
    flash = bytearray(b"\xff" * sim_flash.FLASH_SIZE)
    flash[slots[0][3]:slots[0][3] + len(image)] = image
    if romfs is not None:
        row = _romfs_row(table)
        if row is None:
            raise ValueError("%s has no romfs partition" % Path(table_path).name)
        if len(romfs) > row[4]:
            raise ValueError("romfs image of %d bytes does not fit its partition (%d bytes)" % (len(romfs), row[4]))
        flash[row[3]:row[3] + len(romfs)] = romfs
    Path(flash_path).parent.mkdir(parents=True, exist_ok=True)
    save_flash(flash_path, flash)
    if fs_dir is not None:
        Path(fs_dir).mkdir(parents=True, exist_ok=True)


def _romfs_row(table):
    """The table's "romfs" partition (as the firmware finds it: data, any subtype), or None."""
    rows = sim_flash.find(table, sim_flash.TYPE_DATA, label="romfs")
    return rows[0] if rows else None


def board_env(base, table, **wiring):
    """The environment of a board's VM: `base` with the board's `wiring` (OTASIM_* and
    MICROPYPATH), led by the memory a romfs partition in `table` is mapped into
    (modules/sim_rom.py): placeholder strings that must come first in the environment block."""
    env = {}
    row = _romfs_row(table)
    if row is not None:
        for i in range(-(-row[4] // ROM_PIECE)):
            env["OTASIM_ROM%d" % i] = "R" * ROM_PIECE
    env.update((k, v) for k, v in base.items() if not k.startswith("OTASIM_ROM"))
    env.update(wiring)
    return env


def _die_with_parent():
    """Child setup: the device dies with its supervisor even if only the supervisor is killed."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Supervisor:
    """Runs the boot loop of one device until it halts; `run()` returns the exit code."""

    def __init__(self, flash, fs, *, heapsize="100K", halt_on_idle=False, max_boots=None,
                 timeout=None, uid=None, table=simhost.PARTITIONS, tear=None, trace=None):
        self.flash_path = Path(flash).resolve()
        self.fs = Path(fs).resolve()
        self.heapsize = heapsize
        self.halt_on_idle = halt_on_idle
        self.max_boots = max_boots
        self.end = time.monotonic() + timeout if timeout else None
        self.uid = uid or default_uid(flash)
        self.table_path = Path(table).resolve()
        self.table = sim_flash.load_table(str(self.table_path))
        self.wiring = Path(str(self.flash_path) + ".board")  # mounted at /.sim in the VM
        self.frozen = self.wiring / "fw"
        plan = tear or os.environ.get("OTASIM_TEAR_PLAN")
        self.tear = [int(x) for x in plan.split()] if isinstance(plan, str) else plan
        self.trace = trace if trace is not None else os.environ.get("OTASIM_TRACE_FLASH") == "1"
        self.ops = []  # this boot's flash operations: [partition, kind, count] runs
        self.vm_tear = None
        self.boots = 0
        self.version = "?"
        self.wdt = None  # armed timeout in seconds
        self.deadline = None

    def say(self, text):
        print("[sim] " + text, flush=True)

    def _halt(self, reason, code=0):
        self.say("halt reason=%s boots=%d" % (reason, self.boots))
        return code

    def check_flash(self):
        if not self.flash_path.exists() or self.flash_path.stat().st_size != sim_flash.FLASH_SIZE:
            raise FileNotFoundError("%s is not a 4 MiB flash file (make one with `sim new`)" % self.flash_path)

    def run(self):
        self.check_flash()
        Path(str(self.flash_path) + ".rtc").unlink(missing_ok=True)  # power-on: the RTC domain starts afresh
        cause, wake = PWRON_RESET, None
        while True:
            if self.max_boots is not None and self.boots >= self.max_boots:
                return self._halt("max-boots")
            try:
                loaded = self.boot(cause, wake)
            except sim_flash.PowerCut as cut:
                kind, addr = str(cut).split()
                return self._halt("powercut %s %s %s bootloader" % (kind, self._label(int(addr, 16)), addr))
            if loaded is None:
                return self._halt("no-bootable-app", 1)
            outcome = self._run_vm(loaded.label, cause)
            while outcome[0] == "soft":
                self.say("soft reset")
                outcome = self._run_vm(loaded.label, SOFT_RESET)
            if outcome[0] == "panic":
                self.say("the VM crashed (signal %d): the panic handler reboots" % -outcome[1])
            if outcome[0] == "idle":
                outcome = self._idle()
            wake = None
            self._report_ops()
            if outcome[0] == "powercut":
                return self._halt("powercut " + " ".join(outcome[1:]))
            if outcome[0] == "halt":
                return self._halt(outcome[1])
            if outcome[0] == "timeout":
                return self._halt("timeout", 1)
            if outcome[0] == "deepsleep":
                if outcome[1] is None:
                    return self._halt("deepsleep")
                if not self._sleep(outcome[1] / 1000):
                    return self._halt("timeout", 1)
                cause, wake = DEEPSLEEP_RESET, loaded.label
            else:
                cause = {"reset": HARD_RESET, "wdt": WDT_RESET, "panic": HARD_RESET}[outcome[0]]

    def boot(self, cause, wake=None):
        """A reset: the watchdog stops, the bootloader picks and checks an app and its frozen
        modules are unpacked. Returns the bootloader's `Boot`, or None if nothing is bootable."""
        self.boots += 1
        self.wdt = None
        self.ops, self.vm_tear = [], None
        planned = self.tear is not None and self.tear[0] == self.boots
        flash = sim_flash.Flash(str(self.flash_path), sim_flash.Tear(self.tear[1], self.tear[2]) if planned else None)
        if self.trace:
            flash.trace = lambda kind, addr: self._op(kind, self._label(addr))
        try:
            loaded = bootloader.boot(flash, self.table, wake)
            for line in (loaded.log if loaded else []):
                self.say("bootloader: " + line)
            if loaded is None:
                return None
            self.version = self._extract(flash, loaded.row)
            state = bootloader.slot_state(flash, self.table, loaded.label)
            if planned:
                self.vm_tear = "%d %d" % (self.tear[1] - flash.ops, self.tear[2])
        except sim_flash.PowerCut:
            self._report_ops()
            raise
        finally:
            flash.close()
        self.say("boot %d slot=%s cause=%s version=%s state=%s"
                 % (self.boots, loaded.label, CAUSES[cause], self.version, state))
        return loaded

    def _label(self, addr):
        for row in self.table:
            if row[3] <= addr < row[3] + row[4]:
                return row[0]
        return "vfs"

    def _op(self, kind, label):
        """Count one flash operation of this boot (OTASIM_TRACE_FLASH)."""
        if self.ops and self.ops[-1][0] == label and self.ops[-1][1] == kind:
            self.ops[-1][2] += 1
        else:
            self.ops.append([label, kind, 1])

    def _report_ops(self):
        if self.trace:
            self.say("flash ops boot %d: %s" % (self.boots, " ".join("%s:%s*%d" % tuple(r) for r in self.ops)))
            self.ops = []

    def _extract(self, flash, row):
        """Lay out what the VM mounts at /.sim: `hw` (the simulated hardware modules), `fw`
        (the board glue and micropython-lib packages every image freezes, then the loaded
        image's own modules, which win; returns its label, the descriptor's version being empty on
        official builds), `inbox` (the host's filesystem folder), `share`
        (`<flash>.share`, files offered from outside the board) and `host` (the flash file's
        folder, where the test side keeps files that steer simulated hardware)."""
        image = bytearray(row[4])
        sim_flash.PartitionIO(flash, row).read(0, image)
        shutil.rmtree(self.wiring, ignore_errors=True)
        self.frozen.mkdir(parents=True)
        (self.wiring / "hw").symlink_to(simhost.MODULES)
        self.fs.mkdir(parents=True, exist_ok=True)
        (self.wiring / "inbox").symlink_to(self.fs)
        share = Path(str(self.flash_path) + ".share")
        share.mkdir(exist_ok=True)
        (self.wiring / "share").symlink_to(share)
        (self.wiring / "host").symlink_to(self.flash_path.parent)
        for base in (simhost.BOARD_FROZEN, simhost.BUILD_FROZEN):
            if base.is_dir():
                shutil.copytree(base, self.frozen, dirs_exist_ok=True)
        try:
            modules = fwimage.read_modules(image)
        except ValueError:
            modules = {}  # an image without an archive: firmware with nothing frozen
        for name, source in modules.items():
            path = self.frozen / (name.replace(".", "/") + ".py")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(source)
        try:
            return fwimage.read_label(image) or "?"
        except ValueError:
            return "?"

    def _sleep(self, seconds):
        """Sleep, unless the run's timeout comes first (then False)."""
        if self.end is not None and time.monotonic() + seconds > self.end:
            time.sleep(max(0.0, self.end - time.monotonic()))
            return False
        time.sleep(seconds)
        return True

    def _idle(self):
        """main.py is done and the board sits at the REPL: only the watchdog can end that."""
        if self.wdt is not None:
            return ("wdt",) if self._sleep(max(0.0, self.deadline - time.monotonic())) else ("timeout",)
        if self.halt_on_idle:
            return ("halt", "idle")
        if self.end is None:
            while True:
                time.sleep(3600)
        self._sleep(self.end - time.monotonic())
        return ("timeout",)

    def spawn(self, label, cause, args, **popen):
        """Start the MicroPython VM in the filesystem folder with the board's wiring (the
        OTASIM_* variables); returns the process and the read end of its control pipe."""
        r, w = os.pipe()
        env = board_env(os.environ, self.table, **{
            "MICROPYPATH": str(simhost.MODULES),
            "OTASIM_MODULES": str(simhost.MODULES),
            "OTASIM_BOARD": str(self.wiring),
            "OTASIM_FLASH": str(self.flash_path),
            "OTASIM_PARTITIONS": str(self.table_path),
            "OTASIM_RUNNING": label,
            "OTASIM_RESET_CAUSE": str(cause),
            "OTASIM_UID": self.uid.hex(),
            "OTASIM_CTL_FD": str(w),
        })
        env.pop("OTASIM_TEAR", None)
        if self.vm_tear is not None:  # the first VM of the planned boot carries the cut
            env["OTASIM_TEAR"], self.vm_tear = self.vm_tear, None
        if self.trace:
            env["OTASIM_TRACE"] = "1"
        proc = subprocess.Popen([micropython_binary(), "-X", "heapsize=%d" % vm_heap(self.heapsize)] + list(args),
                                cwd=self.fs, env=env, pass_fds=(w,), preexec_fn=_die_with_parent, **popen)
        os.close(w)
        return proc, r

    def _run_vm(self, label, cause):
        """One run of the MicroPython VM, until it ends or the board takes it down."""
        proc, r = self.spawn(label, cause, [str(simhost.PORT_MAIN)], stdin=subprocess.DEVNULL)
        pending = b""
        try:
            while True:
                wait = 0.5
                now = time.monotonic()
                for limit in (self.deadline if self.wdt is not None else None, self.end):
                    if limit is not None:
                        wait = max(0.0, min(wait, limit - now))
                if select.select([r], [], [], wait)[0]:
                    data = os.read(r, 4096)
                    if not data:
                        code = proc.wait()
                        return ("panic", code) if code < 0 else ("idle",)
                    pending += data
                    while b"\n" in pending:
                        line, pending = pending.split(b"\n", 1)
                        outcome = self._message(line.decode(errors="replace").split())
                        if outcome:
                            return outcome
                now = time.monotonic()
                if self.wdt is not None and now >= self.deadline:
                    return ("wdt",)
                if self.end is not None and now >= self.end:
                    return ("timeout",)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            os.close(r)

    def _message(self, words):
        """Act on one line from the device; an outcome ends this run of the VM."""
        if not words:
            return None
        if words[0] == "wdt":
            self.wdt = int(words[1]) / 1000
            self.deadline = time.monotonic() + self.wdt
        elif words[0] == "feed" and self.wdt is not None:
            self.deadline = time.monotonic() + self.wdt
        elif words[0] in ("reset", "soft"):
            return (words[0],)
        elif words[0] == "deepsleep":
            return ("deepsleep", None if words[1] == "forever" else int(words[1]))
        elif words[0] == "op" and len(words) == 3:
            self._op(words[1], words[2])
        elif words[0] == "powercut":
            return tuple(words)
        return None


def power_off(proc):
    """Cut a running board's power: SIGKILL its whole process group (supervisor or bridge, and
    the VM), as pulling the plug would, then reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # already gone
    proc.wait()


def lead_group():
    """Lead a process group of its own (the VMs join it, so killing the group is a power cut);
    SIGTERM exits cleanly."""
    if os.getpgrp() != os.getpid():
        os.setpgid(0, 0)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def run(flash, fs, **options):
    """Run one device in its own process group."""
    lead_group()
    return Supervisor(flash, fs, **options).run()
