"""Fixtures for the ESP32 simulator: whole boards (`sim_device`), firmware images (`firmware`)
and one-off snippets against a flash file without the boot loop (`sim_snippet`)."""
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import mpunix
from mpunix import LIB, ROOT, SIM_MODULES

sys.path.insert(0, str(ROOT / "boards" / "unix"))
from simhost import PARTITIONS, ROMFS_PARTITIONS, boardfs, supervisor  # noqa: E402
import sim_flash  # noqa: E402  (on the path through simhost)
import sim_otadata  # noqa: E402
from mpota import fwimage  # noqa: E402

BOOT_LINE = re.compile(r"^\[sim\] boot (\d+) slot=(\S+) cause=(\S+) version=(\S+) state=(\S+)$", re.M)
TABLE = sim_flash.add_vfs(sim_flash.load_table(str(PARTITIONS)))  # as the port's start-up


def partition(label):
    """(label, type, subtype, address, size) of a row of the ESP32 OTA table."""
    return next(row for row in TABLE if row[0] == label)


def blank_flash(path, image=None):
    """Write an erased 4 MiB flash file, with `image` in ota_0 when given."""
    supervisor.new_device(path, None, image or b"")
    return Path(path)


def decode_otadata(flash_bytes):
    """Both otadata entries as dicts (seq, label, state, crc, state_name)."""
    base = partition("otadata")[3]
    out = []
    for i in (0, 1):
        seq, label, state, crc = sim_otadata.decode(flash_bytes[base + i * 4096:base + i * 4096 + 32])
        out.append({"seq": seq, "label": label, "state": state, "crc": crc,
                    "state_name": sim_otadata.STATE_NAMES.get(state, str(state))})
    return out


class SimDevice:
    """One simulated board: a flash file and a filesystem folder, run by the supervisor."""

    def __init__(self, root, image, files, heapsize, romfs=None):
        self.root = Path(root)
        self.table = ROMFS_PARTITIONS if romfs is not None else PARTITIONS
        self.flash = self.root / "flash.bin"
        self.fs = self.root / "fs"
        self.heapsize = heapsize
        self.console = ""  # everything every run printed, in order
        self.proc = None
        self.returncode = None
        self._reader = None
        supervisor.new_device(self.flash, self.fs, image, table_path=self.table, romfs=romfs)
        self.write_files(files or {})

    def write_files(self, files):
        """Put files on the board's filesystem: {"main.py": "...", "lib/x.py": "..."}."""
        for name, text in files.items():
            path = self.fs / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(text if isinstance(text, bytes) else text.encode())

    def share_files(self, files):
        """Offer files to the board from outside its filesystem (read-only at /.sim/share)."""
        share = Path(str(self.flash) + ".share")
        for name, data in files.items():
            path = share / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data if isinstance(data, bytes) else data.encode())

    def read_file(self, path):
        """A file from the board's own filesystem (LittleFS in its flash); the board must be off."""
        assert self.proc is None, "power the board off first"
        return boardfs.read(self.flash, path, self.table)

    def listdir(self, path="/"):
        assert self.proc is None, "power the board off first"
        return boardfs.listdir(self.flash, path, self.table)

    def remove_path(self, path):
        """Delete a file or folder from the board's filesystem; the board must be off."""
        assert self.proc is None, "power the board off first"
        boardfs.remove(self.flash, path, self.table)

    def install_lib(self):
        """Copy the project's device package (lib/) into the board's /lib, as a maker would."""
        shutil.copytree(LIB, self.fs / "lib", dirs_exist_ok=True)

    def _command(self, halt_on_idle, max_boots, timeout):
        cmd = [sys.executable, "-m", "mpota", "sim", "run", "--flash", str(self.flash), "--fs", str(self.fs),
               "--heapsize", self.heapsize, "--table", str(self.table)]
        if halt_on_idle:
            cmd.append("--halt-on-idle")
        if max_boots is not None:
            cmd += ["--max-boots", str(max_boots)]
        if timeout is not None:
            cmd += ["--timeout", str(timeout)]
        return cmd

    def start(self, *, halt_on_idle=False, max_boots=None, timeout=None, env=None):
        """Power the board on in the background (its own process group). `env` adds variables
        for the supervisor: OTASIM_TEAR_PLAN, OTASIM_TRACE_FLASH (boards/unix/simhost)."""
        assert self.proc is None, "the device is already running"
        self.proc = subprocess.Popen(self._command(halt_on_idle, max_boots, timeout), cwd=ROOT,
                                     env=dict(os.environ, **(env or {})),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True)
        self._reader.start()
        return self.proc

    def _read(self, stream):
        for raw in iter(lambda: stream.read1(4096), b""):
            self.console += raw.decode(errors="replace")

    def wait(self, timeout=60):
        """Wait for the background run to end; returns the console text."""
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.power_cut()
            raise AssertionError("the device did not halt within %ss:\n%s" % (timeout, self.console))
        self._reader.join(5)
        self.proc = None
        # a segfault of the VM is a hang or a panic reboot on a board: never a pass
        assert "] the VM crashed" not in self.console, self.console
        return self.console

    def wait_for(self, pattern, timeout=30):
        """Wait until the console matches the regular expression `pattern` (multiline)."""
        self._wait_until(lambda: re.search(pattern, self.console, re.M), timeout, repr(pattern))

    def wait_lines(self, pattern, count, timeout=30):
        """Wait until `count` console lines in all match the regular expression `pattern`."""
        self._wait_until(lambda: len(re.findall(pattern, self.console, re.M)) >= count, timeout,
                         "%d lines %r" % (count, pattern))

    def wait_boots(self, count, timeout=30):
        """Wait until the console shows `count` boot lines in all."""
        self._wait_until(lambda: len(self.boot_log()) >= count, timeout, "boot %d" % count)

    def _wait_until(self, done, timeout, what):
        end = time.monotonic() + timeout
        while not done():
            if time.monotonic() > end or (self.proc is not None and self.proc.poll() is not None
                                           and not self._reader.is_alive()):
                raise AssertionError("%s never appeared:\n%s" % (what, self.console))
            time.sleep(0.01)

    def power_cut(self):
        """Cut the power: SIGKILL the supervisor and the device together."""
        if self.proc is None:
            return
        supervisor.power_off(self.proc)
        self._reader.join(5)
        self.proc = None
        self.console += "\n[test] power cut\n"

    def run(self, timeout=30, halt_on_idle=True, max_boots=None, env=None):
        """Power on, run until the board halts (or `timeout` seconds), return the console."""
        self.start(halt_on_idle=halt_on_idle, max_boots=max_boots, timeout=timeout, env=env)
        return self.wait(timeout + 30)

    def read_partition(self, label):
        row = partition(label)
        with open(self.flash, "rb") as f:
            f.seek(row[3])
            return f.read(row[4])

    def otadata(self):
        return decode_otadata(self.flash.read_bytes())

    def boot_log(self):
        """Every boot line so far: dicts with n, slot, cause, version, state."""
        return [{"n": int(m[0]), "slot": m[1], "cause": m[2], "version": m[3], "state": m[4]}
                for m in BOOT_LINE.findall(self.console)]


@pytest.fixture
def sim_device(tmp_path):
    """Factory: `sim_device(image, files=None, heapsize="100K", romfs=None) -> SimDevice`; with
    `romfs` (an image, b"" for none) the board has the romfs partition table. Boards still
    running at the end of the test are powered off."""
    made = []

    def make(image, files=None, heapsize="100K", romfs=None):
        device = SimDevice(tmp_path / ("dev%d" % len(made)), image, files, heapsize, romfs)
        made.append(device)
        return device

    yield make
    for device in made:
        device.power_cut()


class Firmware:
    """Image helpers for tests: `firmware(version, modules=None, size=None, secure_version=0)`."""

    build = staticmethod(fwimage.build_image)
    version_of = staticmethod(fwimage.read_app_version)
    label_of = staticmethod(fwimage.read_label)
    modules_of = staticmethod(fwimage.read_modules)

    def __call__(self, label, modules=None, **options):
        return fwimage.build_image(label, modules or {}, **options)


@pytest.fixture
def firmware():
    return Firmware()


@pytest.fixture
def sim_snippet(tmp_path):
    """`sim_snippet(code, flash=None, running="ota_0", cause=1, check=True, **mp_options)`:
    run device code under the unix port with the simulator's modules as built-ins and `flash`
    (default: a fresh erased flash file for this test) as the board's flash."""
    default = tmp_path / "snippet-flash.bin"

    def run(code, flash=None, running="ota_0", cause=1, check=True, env=None, **options):
        if flash is None:
            flash = default
            if not flash.exists():
                blank_flash(flash)
        full_env = {"OTASIM_FLASH": str(flash), "OTASIM_PARTITIONS": str(PARTITIONS),
                    "OTASIM_RUNNING": running, "OTASIM_RESET_CAUSE": str(cause)}
        full_env.update(env or {})
        options.setdefault("path", (SIM_MODULES, LIB))
        options.setdefault("cwd", tmp_path)
        return mpunix.run(code, env=full_env, check=check, **options)

    run.flash = default
    return run
