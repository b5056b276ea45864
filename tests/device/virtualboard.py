"""The host side of device tests: run the real mpremote CLI against a port, and start or stop
a virtual board (`mpota sim board`, `mpota sim rp2-board`: a simulator behind a pty) on a fresh
flash."""
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "boards" / "unix"))
from simhost import supervisor  # noqa: E402
from rp2host import board as rp2board, fs as rp2fs  # noqa: E402
from mpota import fwimage  # noqa: E402

BOOT_LINE = re.compile(r"^\[sim\] boot (\d+) slot=(\S+) cause=(\S+) version=(\S+) state=(\S+)$", re.M)
PICO_BOOT_LINE = re.compile(r"^\[sim\] boot (\d+) cause=(\S+)$", re.M)


def mpremote_binary():
    found = Path(sys.executable).parent / "mpremote"
    if not found.exists():
        raise RuntimeError("mpremote is missing: run `make setup` (it is in requirements-dev.txt)")
    return str(found)


def mpremote(port, *args, timeout=60, check=True):
    """`mpremote connect PORT ARGS...` as a subprocess; the CompletedProcess (text)."""
    cmd = [mpremote_binary(), "connect", port] + [str(a) for a in args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError("mpremote timed out after %ss: %s\n%s" % (timeout, " ".join(cmd[3:]), exc.stdout or ""))
    if check and proc.returncode != 0:
        raise AssertionError("mpremote %s failed (%d)\nstdout:\n%s\nstderr:\n%s"
                             % (" ".join(cmd[3:])[:300], proc.returncode, proc.stdout, proc.stderr))
    return proc


class VirtualBoardProcess:
    """A fresh board (firmware `image` in ota_0, blank otadata, `files` on its filesystem) served
    on a pty by `python -m mpota sim board`; its [sim] lines are kept in `root/board.log`."""

    def __init__(self, root, image=None, files=None, heapsize="100K"):
        self.root = Path(root)
        self.flash = self.root / "flash.bin"
        self.fs = self.root / "fs"
        self.log_path = self.root / "board.log"
        self.heapsize = heapsize
        self.proc = None
        self.port = None
        supervisor.new_device(self.flash, self.fs, image or fwimage.build_image("1.0.0", {}))
        for name, text in (files or {}).items():
            path = self.fs / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(text if isinstance(text, bytes) else text.encode())

    def command(self):
        return ["sim", "board", "--flash", str(self.flash), "--fs", str(self.fs), "--heapsize", self.heapsize]

    def start(self, timeout=30):
        """Power on; returns the pty's path once the board prints it."""
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mpota"] + self.command(), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
        end = time.monotonic() + timeout
        while not self.log().startswith("/dev/"):
            if time.monotonic() > end or self.proc.poll() is not None:
                self.stop()
                raise AssertionError("the virtual board did not start:\n" + self.log())
            time.sleep(0.02)
        self.port = self.log().split("\n", 1)[0].strip()
        return self.port

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def boot_log(self):
        """Every boot so far: dicts with n, slot, cause, version, state."""
        return [{"n": int(m[0]), "slot": m[1], "cause": m[2], "version": m[3], "state": m[4]}
                for m in BOOT_LINE.findall(self.log())]

    def wait_boots(self, count, timeout=30):
        end = time.monotonic() + timeout
        while len(self.boot_log()) < count:
            if time.monotonic() > end:
                raise AssertionError("boot %d never came:\n%s" % (count, self.log()))
            time.sleep(0.02)

    def stop(self):
        """Cut the power: the bridge and its VM together."""
        if self.proc is None:
            return
        supervisor.power_off(self.proc)
        self.proc = None


class VirtualPicoProcess(VirtualBoardProcess):
    """A Pico W fresh from the factory (erased storage, `files` then copied onto its LittleFS)
    served by `python -m mpota sim rp2-board`; boot_log() dicts have n and cause."""

    def __init__(self, root, files=None, heapsize="256K"):  # noqa: the ESP32 flash is not made
        self.root = Path(root)
        self.flash = self.root / "flash.bin"
        self.log_path = self.root / "board.log"
        self.heapsize = heapsize
        self.proc = None
        self.port = None
        rp2board.new_board(self.flash)
        if files:
            rp2fs.write_files(self.flash, files)

    def command(self):
        return ["sim", "rp2-board", "--flash", str(self.flash), "--heapsize", self.heapsize]

    def boot_log(self):
        return [{"n": int(m[0]), "cause": m[1]} for m in PICO_BOOT_LINE.findall(self.log())]
