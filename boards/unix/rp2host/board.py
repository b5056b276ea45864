"""The board around one simulated Pico W: power, the watchdog, resets, power cuts.

There is no bootloader choice on rp2: every boot runs the same firmware, which mounts the
filesystem (LittleFS on `rp2.Flash()`) and runs boot.py and main.py. The flash file holds the
storage region only (848 KiB on a Pico W); the firmware region is not writable from MicroPython.

Watchdog model: the device reports each arm and feed with the flash time (worst case from the
data sheet) spent since the last one; the supervisor adds the VM's CPU time since then, scaled
by `cpu_scale` (a Pico's Cortex-M0+ at 125 MHz against one host core), and counts that as the
board time between two feeds. A gap above the armed timeout is a watchdog reset, as the wall
clock's deadline is. The watchdog record (`<flash>.wdt.json`) keeps: arms, feeds, the longest
gap, `fired` (expiries while boot.py or main.py ran), `gaps_over` (of them, those found by the
board-time model) and `idle_expiries` (after main.py ended or the VM crashed)."""
import json
import os
import time
from pathlib import Path

import rp2host
from simhost import supervisor
from simhost.supervisor import PWRON_RESET, WDT_RESET

STORAGE_BYTES = 868352  # boards/unix/rp2/modules/rp2.py, RPI_PICO_W
PICO_OUI = bytes.fromhex("e66058")  # the start of a Pico's flash unique id (8 bytes)
CAUSES = {PWRON_RESET: "PWRON_RESET", WDT_RESET: "WDT_RESET"}
CPU_SCALE = 50.0


def new_board(flash_path):
    """A Pico W fresh from the factory with MicroPython just flashed: an erased storage region
    (the first boot formats it)."""
    Path(flash_path).parent.mkdir(parents=True, exist_ok=True)
    supervisor.save_flash(flash_path, b"\xff" * STORAGE_BYTES)


def default_uid(flash_path):
    return PICO_OUI + supervisor.default_uid(flash_path)[3:] + b"\x00\x01"


def _cpu_ns(pid):
    """CPU time the process has used (the scheduler's own count), or None once it is gone."""
    try:
        with open("/proc/%d/schedstat" % pid) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class Board(supervisor.Supervisor):
    """Runs the boot loop of one Pico W until it halts; `run()` returns the exit code.
    `cut_at=n`: the power goes off during the n-th flash operation (page program or sector
    erase) counted from power-on, and comes back at once."""

    def __init__(self, flash, *, heapsize="256K", halt_on_idle=False, max_boots=None, timeout=None,
                 uid=None, cut_at=None, seed=1, cpu_scale=CPU_SCALE, stop_at_idle=False):
        super().__init__(flash, Path(flash).resolve().parent, heapsize=heapsize, halt_on_idle=halt_on_idle,
                         max_boots=max_boots, timeout=timeout, uid=uid or default_uid(flash))
        self.cut_at = cut_at
        self.stop_at_idle = stop_at_idle  # a test's shortcut: no waiting for an armed watchdog
        self.ops = 0
        self.seed = seed
        self.cpu_scale = cpu_scale
        self.record_path = Path(str(self.flash_path) + ".wdt.json")
        self.record = {"arms": 0, "feeds": 0, "max_gap_ms": 0.0, "fired": 0, "gaps_over": 0,
                       "idle_expiries": 0}
        self._proc = None
        self._cpu_mark = None
        self._gap_ms = 0.0

    def check_flash(self):
        if not self.flash_path.exists() or self.flash_path.stat().st_size != STORAGE_BYTES:
            raise FileNotFoundError("%s is not a Pico W storage file (make one with `sim rp2-new`)" % self.flash_path)

    def run(self):
        self.check_flash()
        cause = PWRON_RESET
        try:
            while True:
                if self.max_boots is not None and self.boots >= self.max_boots:
                    return self._halt("max-boots")
                self.boot(cause)
                outcome = self._run_vm("rp2", cause)
                while outcome[0] == "soft":
                    self.say("soft reset")
                    outcome = self._run_vm("rp2", cause)  # the reset reason register is unchanged
                if outcome[0] == "idle" and self.stop_at_idle:
                    return self._halt("idle")
                if outcome[0] == "panic":
                    self.say("the VM crashed (signal %d): the core hangs" % -outcome[1])
                if outcome[0] in ("idle", "panic"):  # a crashed VM hangs the core until the watchdog
                    outcome = self._idle()
                    if outcome[0] == "wdt":  # at the REPL, or hung after a crash: not while working
                        self.record["idle_expiries"] += 1
                        outcome = ("idle-wdt",)
                if outcome[0] == "halt":
                    return self._halt(outcome[1])
                if outcome[0] == "timeout":
                    return self._halt("timeout", 1)
                if outcome[0] == "cut":
                    self.say("power cut after %d flash operations" % self.ops)
                    cause = PWRON_RESET
                else:  # machine.reset() reboots through the watchdog: the port cannot tell them apart
                    if outcome[0] == "wdt":  # expired while main.py was running
                        self.record["fired"] += 1
                    cause = WDT_RESET
        finally:
            if self.cut_at is not None:
                self.say("flash operations: %d" % self.ops)
            self.record_path.write_text(json.dumps(self.record))

    def boot(self, cause):
        self.boots += 1
        self.wdt = None
        self.say("boot %d cause=%s" % (self.boots, CAUSES[cause]))

    def spawn(self, label, cause, args, **popen):
        """The VM with the rp2 wiring: the rp2 built-ins on the path, the storage file, the cut."""
        if list(args) == [str(supervisor.simhost.PORT_MAIN)]:
            args = [str(rp2host.PORT_MAIN)]
        saved = dict(os.environ)
        os.environ["OTASIM_SEED"] = str(self.seed * 1000 + self.boots)
        if self.cut_at is not None and self.ops < self.cut_at:
            os.environ["OTASIM_CUT_AT"] = str(self.cut_at - self.ops)
        else:
            os.environ.pop("OTASIM_CUT_AT", None)
        try:
            proc, r = super().spawn(label, cause, args, **popen)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        self._proc = proc
        self._cpu_mark = _cpu_ns(proc.pid)
        return proc, r

    def _charge(self, flash_us):
        """Board time since the last arm or feed: flash time plus scaled CPU time (ms)."""
        now = _cpu_ns(self._proc.pid) if self._proc else None
        cpu_ms = 0.0
        if now is not None and self._cpu_mark is not None:
            cpu_ms = (now - self._cpu_mark) / 1e6
        self._cpu_mark = now
        return flash_us / 1000 + cpu_ms * self.cpu_scale

    def _message(self, words):
        if not words:
            return None
        if words[0] == "op":
            self.ops += 1
            return None
        if words[0] == "cut":
            return ("cut",)
        if words[0] == "wdt":
            self._charge(int(words[2]))
            self.record["arms"] += 1
            self.wdt = int(words[1]) / 1000
            self.deadline = time.monotonic() + self.wdt
            self._gap_ms = 0.0
            return None
        if words[0] == "expired":
            self.record["gaps_over"] += 1
            self.record["max_gap_ms"] = max(self.record["max_gap_ms"], round(self._charge(int(words[1])), 1))
            return ("wdt",)
        if words[0] == "feed":
            gap = self._charge(int(words[1]))
            if self.wdt is None:
                return None
            self.record["feeds"] += 1
            if gap > self.record["max_gap_ms"]:
                self.record["max_gap_ms"] = round(gap, 1)
            if gap > self.wdt * 1000:
                self.record["gaps_over"] += 1
                return ("wdt",)  # the board would have reset before this feed
            self.deadline = time.monotonic() + self.wdt
            return None
        if words[0] in ("reset", "soft"):
            return (words[0],)
        return None


def run(flash, **options):
    """Run one board in its own process group."""
    supervisor.lead_group()
    return Board(flash, **options).run()
