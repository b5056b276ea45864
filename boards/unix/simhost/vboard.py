"""A virtual board that mpremote can talk to: the simulated ESP32 behind a pseudo-terminal.

The pty plays the board's USB-serial bridge: the host opens its slave end (`mpremote connect
/dev/pts/N`), this process holds the master and speaks MicroPython's REPL protocol there as the
firmware does (friendly REPL, raw REPL, raw-paste mode, soft reset). Code runs in one long-lived
unix-port process per boot, the agent, which execs every piece it is sent in one globals dict,
so state persists between raw-REPL calls as in a board's VM. Boots, resets, the watchdog and deep
sleep are the supervisor's (its bootloader, image extraction and wiring are reused as they are).

The REPL side (`ReplBridge`) knows nothing of the board behind it: a board class (this ESP32's
`VirtualBoard`, the Pico W's in rp2host/vboard.py) adds it to its supervisor and says how the
board powers up, which port module starts its VM, what its resets and crashes do.
"""
import os
import pty
import select
import struct
import subprocess
import termios
import time
import tty

from simhost import supervisor
from simhost.supervisor import DEEPSLEEP_RESET, HARD_RESET, PWRON_RESET, SOFT_RESET, WDT_RESET

FRIENDLY, RAW = "friendly", "raw"
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
PASTE_WINDOW = 128  # half the firmware's 256-byte stdin buffer, as the ESP32 port announces

# The agent: starts the board (`_port`, the port's start-up module: filesystem, frozen _boot),
# then reads `<seq> <mode> <length> <name>\n<source>` on stdin, says `run <seq>` when the code
# starts (it may be interrupted from then on) and `done <seq> ok|error|exit <hex traceback>`
# over the simulator's control pipe; mode `file` runs the board's file <name> (boot.py,
# main.py). Output goes to stdout as the board's UART.
#
# A Ctrl-C (SIGINT) meant for code that ended just before it arrived lands in the agent's own
# loop, maybe in the middle of reading the next header. So after every piece of code it was
# sent a SIGINT for, the host sends an empty line (a sync) and writes nothing more until the
# agent answers `synced`; an interrupt caught between pieces of code is answered `intr`, and
# the host sends another sync. The stray interrupt then only ever costs a sync line.
AGENT = r"""
import sys, io, os, binascii
import sim_link
_g = {"__name__": "__main__"}
_port.start(_g)
_in = sys.stdin.buffer
_seq = 0

def _done(status, text):
    global _seq
    if _seq:
        sim_link.send("done %d %s %s" % (_seq, status, binascii.hexlify(text.encode()).decode() or "-"))
        _seq = 0

def _trace(e):
    b = io.StringIO()
    sys.print_exception(e, b)
    lines = b.getvalue().split("\n")
    if len(lines) > 2 and lines[0].startswith("Traceback"):
        del lines[1]  # the agent's own frame
    return "\n".join(lines)

def _serve():
    global _seq
    while True:
        line = _in.readline()
        if line == b"\n":
            sim_link.send("synced")
            continue
        head = line.split()
        if not head:
            return
        n = int(head[2])
        src = bytearray(n)
        got = 0
        while got < n:
            got += _in.readinto(memoryview(src)[got:])
        _seq = int(head[0])
        sim_link.send("run %d" % _seq)
        if head[1] == b"file":
            _done(_port.run(str(head[3], "utf-8"), _g), "")
            continue
        try:
            exec(compile(str(src, "utf-8"), str(head[3], "utf-8"), str(head[1], "utf-8")), _g)
            src = None
            _done("ok", "")
        except SystemExit:
            _done("exit", "")
        except BaseException as e:
            src = None
            _done("error", _trace(e))

while True:
    try:
        _serve()
        break
    except KeyboardInterrupt:
        if _seq:
            _done("error", "KeyboardInterrupt: \n")
        else:
            sim_link.send("intr")
"""


class Job:
    """A piece of code for the VM; `kind` says how its end is shown: "startup" (boot files),
    "friendly" or "raw"."""

    def __init__(self, source, name, mode, kind):
        self.source = source if isinstance(source, bytes) else source.encode()
        self.name = name
        self.mode = mode
        self.kind = kind


PROMPT = Job(b"", "", "", "prompt")  # after the boot files: the REPL's first prompt


def _more(lines):
    """Whether the friendly REPL waits for another line (a compound statement, open brackets,
    a triple-quoted string), roughly as the firmware's `mp_repl_continue_with_input`."""
    text = "\n".join(lines)
    if len(lines) > 1 and lines[-1].strip():
        return True
    last = lines[-1].rstrip()
    depth = sum(text.count(c) for c in "([{") - sum(text.count(c) for c in ")]}")
    quotes = text.count('"""') % 2 or text.count("'''") % 2
    return len(lines) == 1 and (last.endswith((":", "\\")) or last.startswith("@")) or depth > 0 or bool(quotes)


class ReplBridge:
    """One board on a pty; `path` is the slave device, `serve()` runs until the process dies.
    Mixed into a board's supervisor class, which supplies `power_up(cause, wake)` (the label of
    what runs, or None: the board stays off), `port_import` (the agent's line importing the
    port's start-up module as `_port`), `outcome(outcome)` (acts on what the supervisor's
    `_message` returned), `soft_cause()`, `vm_died()` and `board_name`."""

    def __init__(self, *args, **options):
        super().__init__(*args, **options)
        self.check_flash()
        self.master, self.slave = pty.openpty()
        tty.setraw(self.slave)  # no echo, no line editing: bytes pass as on a UART
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        self.label = None
        self.proc = self.ctl = self.out = None
        self.pending = b""
        self.mode = FRIENDLY
        self.jobs, self.job, self.seq = [], None, 0
        self.started = self.interrupt = self.syncing = False
        self.input = bytearray()
        self.line, self.cont, self.paste, self.pasted = bytearray(), [], None, None
        self.wake_at, self.wake_cause = None, None

    # --- the wire -----------------------------------------------------------------------------

    def tx(self, data):
        """Send bytes to the host; when nobody reads them for a second they are dropped, as a
        UART's output is when no terminal is attached."""
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.master, view):]
            except BlockingIOError:
                if not select.select([], [self.master], [], 1.0)[1]:
                    termios.tcflush(self.slave, termios.TCIFLUSH)

    def tx_cooked(self, data):
        self.tx(data.replace(b"\n", b"\r\n"))  # the port's stdout turns \n into \r\n

    def serve(self):
        self.reset(PWRON_RESET)
        while True:
            self.poll()

    def poll(self, limit=None):
        """Wait for one round of events (at most `limit` seconds) and handle them."""
        now = time.monotonic()
        wait = [limit] if limit is not None else []
        if self.proc is not None and self.wdt is not None:
            wait.append(max(0.0, self.deadline - now))
        if self.wake_at is not None:
            wait.append(max(0.0, self.wake_at - now))
        proc = self.proc
        fds = [self.master] + ([self.out, self.ctl] if proc else [])
        ready = select.select(fds, [], [], min(wait) if wait else None)[0]
        if proc is not None and self.out in ready:
            self._forward()
        if proc is not None and self.proc is proc and self.ctl in ready:
            self._control()
        if self.master in ready:
            self._receive()
        now = time.monotonic()
        if self.proc is not None and self.wdt is not None and now >= self.deadline:
            self.reset(WDT_RESET)
        if self.wake_at is not None and now >= self.wake_at:
            self.wake_at = None
            self.reset(self.wake_cause, self.label)

    # --- the VM -------------------------------------------------------------------------------

    def reset(self, cause, wake=None):
        """A hard reset: the board powers up, then the firmware starts in the friendly REPL."""
        self._stop()
        self.wake_at = None
        self.mode = FRIENDLY
        label = self.power_up(cause, wake)
        if label is None:
            self._halt("no-bootable-app")  # the board stays off: no VM, input is dropped
            return
        self.label = label
        self._start(cause)

    def soft_reset(self):
        """Ctrl-D or SystemExit: a new VM on the same firmware; the watchdog keeps running."""
        self.say("soft reset")
        self.tx(b"MPY: soft reboot\r\n")
        self._stop()
        self._start(self.soft_cause())

    def _start(self, cause):
        self.proc, self.ctl = self.spawn(self.label, cause, ["-c", self.port_import + AGENT], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.out = self.proc.stdout.fileno()
        os.set_blocking(self.out, False)
        self.input = bytearray()
        self.line, self.cont, self.paste, self.pasted = bytearray(), [], None, None
        names = ["boot.py"]
        if self.mode == FRIENDLY:  # the firmware skips main.py after a soft reset from the raw REPL
            names.append("main.py")
        self.jobs = [Job(b"", name, "file", "startup") for name in names] + [PROMPT]
        self._next()

    def _stop(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc.stdin.close()
            self.proc.stdout.close()
            os.close(self.ctl)
        self.proc = self.ctl = self.out = None
        self.pending = b""
        self.jobs, self.job = [], None
        self.started = self.interrupt = self.syncing = False

    def _next(self):
        while self.job is None and not self.syncing and self.jobs and self.proc is not None:
            job = self.jobs.pop(0)
            if job is PROMPT:
                self._prompt()
                continue
            self.seq += 1
            self.job, self.started = job, False
            try:
                head = "%d %s %d %s\n" % (self.seq, job.mode, len(job.source), job.name)
                self.proc.stdin.write(head.encode())
                self.proc.stdin.write(job.source)
                self.proc.stdin.flush()
            except BrokenPipeError:
                pass  # the VM died: its control pipe reports it
        self._consume()

    def _forward(self):
        while True:
            try:
                data = os.read(self.out, 4096)
            except BlockingIOError:
                return
            if not data:
                return
            self.tx_cooked(data)

    def _control(self):
        data = os.read(self.ctl, 4096)
        if not data:
            self._forward()
            self.say("panic: the VM ended (%s)" % self.proc.wait())
            self.vm_died()
            return
        self.pending += data
        proc = self.proc
        while b"\n" in self.pending and self.proc is proc:
            line, self.pending = self.pending.split(b"\n", 1)
            self._message(line.decode(errors="replace").split())
        if self.interrupt and self.started and self.job is not None and self.proc is proc:
            self._interrupt()  # only now: a `done` read in the same batch means it is too late

    def _message(self, words):
        """The agent's `run`/`done`, then the board's own messages (watchdog, resets, sleep)."""
        if words[:1] == ["run"] and int(words[1]) == self.seq:
            self.started = True
            return None
        if words[:1] in (["synced"], ["intr"]):
            if self.syncing and words[0] == "synced":
                self.syncing = False
                self._next()
            elif self.syncing:
                self._sync()  # the stray interrupt came; it may have cost the sync line
            return None
        if words[:1] == ["done"]:
            if int(words[1]) == self.seq and self.job is not None:
                self._forward()  # everything printed before the end comes first
                text = b"" if words[3] == "-" else bytes.fromhex(words[3])
                self._finish(words[2], text)
            return None
        outcome = super()._message(words)
        if outcome:
            self._forward()
            if outcome[0] == "soft":
                self.soft_reset()
            else:
                self.outcome(outcome)
        return None

    def sleep_until(self, seconds, cause):
        """The VM is gone; the board resets with `cause` after `seconds` (None: never)."""
        self._stop()
        self.wake_at = None if seconds is None else time.monotonic() + seconds
        self.wake_cause = cause

    def _interrupt(self):
        """Ctrl-C while code runs: a KeyboardInterrupt in the VM (once per piece of code; a
        second SIGINT before the first is handled would end the unix port)."""
        if not self.started:
            self.interrupt = True
        elif self.interrupt is not None:
            self.interrupt = None
            self.proc.send_signal(2)

    def _sync(self):
        try:
            self.proc.stdin.write(b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # the VM died: its control pipe reports it

    def _finish(self, status, text):
        job, self.job = self.job, None
        if self.interrupt is None:  # a SIGINT went out for this code: it may still be on its way
            self.syncing = True
            self._sync()
        self.started = self.interrupt = False
        if job.kind == "raw":
            self.tx(b"\x04")
            self.tx_cooked(text)
            self.tx(b"\x04")
        else:
            self.tx_cooked(text)
        if status == "exit":
            self.soft_reset()
            return
        if job.name == "boot.py" and status == "error":  # main.py is skipped (v1.22 on)
            self.jobs = [j for j in self.jobs if j.name != "main.py"]
        if job.kind == "raw":
            self.tx(b">")
        elif job.kind == "friendly":
            self.tx(b">>> ")
        self._next()

    def _prompt(self):
        if self.mode == RAW:
            self.tx(RAW_BANNER + b">")
        else:
            self._banner()

    def _banner(self):
        self.tx(b"MicroPython %s on vboard; %s\r\n"
                b"Type \"help()\" for more information.\r\n>>> " % (self.version.encode(), self.board_name.encode()))

    # --- the REPL -----------------------------------------------------------------------------

    def _receive(self):
        try:
            data = os.read(self.master, 4096)
        except (BlockingIOError, OSError):
            return
        if self.proc is None:
            return  # asleep or off: nothing listens
        for b in data:
            if b == 3 and self.job is not None:
                self._interrupt()
            else:
                self.input.append(b)
        self._consume()

    def _consume(self):
        """Feed queued input to the REPL while no code runs (the board's stdin buffer)."""
        i = 0
        while i < len(self.input) and self.job is None and not self.syncing and self.proc is not None:
            if self.paste is not None:
                i = self._paste(i)
            elif self.mode == RAW:
                i = self._raw(i)
            else:
                self._friendly(self.input[i])
                i += 1
        del self.input[:i]
        if self.job is not None and 3 in self.input:
            self.input.remove(3)
            self._interrupt()

    def _submit(self, source, mode, kind):
        self.jobs.append(Job(bytes(source), "<stdin>", mode, kind))
        self._next()

    def _raw(self, i):
        buf = self.input
        j = i
        while j < len(buf) and buf[j] > 4:
            j += 1
        self.line += buf[i:j]
        if j == len(buf):
            return j
        c = buf[j]
        if c == 1:
            if len(self.line) == 2 and self.line[0] == 5:
                if self.line[1] == ord("A"):
                    self.tx(b"R\x01" + struct.pack("<H", PASTE_WINDOW) + b"\x01")
                    self.paste, self.pasted = 0, bytearray()
                else:
                    self.tx(b"R\x00>")
            else:
                self.tx(RAW_BANNER + b">")
            self.line = bytearray()
        elif c == 2:
            self.mode, self.line = FRIENDLY, bytearray()
            self.tx(b"\r\n")
            self._banner()
        elif c == 3:
            self.line = bytearray()
        elif c == 4:
            self.tx(b"OK")
            source, self.line = self.line, bytearray()
            if source:
                self._submit(source, "exec", "raw")
            else:
                self.tx(b"\r\n")
                self.soft_reset()
        return j + 1

    def _paste(self, i):
        """Raw-paste mode: flow control in windows of PASTE_WINDOW bytes, Ctrl-D ends."""
        buf = self.input
        j = i
        while j < len(buf) and buf[j] not in (3, 4):
            j += 1
        self.pasted += buf[i:j]
        self.paste += j - i
        while self.paste >= PASTE_WINDOW:
            self.tx(b"\x01")
            self.paste -= PASTE_WINDOW
        if j == len(buf):
            return j
        source, self.paste, self.pasted = self.pasted, None, None
        self.tx(b"\x04")
        if buf[j] == 4:
            self._submit(source, "exec", "raw")
        else:
            self.tx(b"\x04KeyboardInterrupt: \r\n\x04>")
        return j + 1

    def _friendly(self, b):
        """A small line editor: enough for a person typing (mpremote uses the raw REPL)."""
        if self.pasted is not None:  # paste mode (Ctrl-E)
            if b in (3, 4):
                self.tx(b"\r\n")
                source, self.pasted = self.pasted, None
                if b == 4:
                    self._submit(source, "exec", "friendly")
                else:
                    self.tx(b">>> ")
            else:
                self.pasted.append(b)
                self.tx(b"\r\n=== " if b == 13 else bytes([b]))
            return
        empty = not self.line and not self.cont
        if b == 3:
            self.line, self.cont = bytearray(), []
            self.tx(b"\r\n>>> ")
        elif b == 1 and empty:
            self.mode = RAW
            self.tx(b"\r\n" + RAW_BANNER + b">")
        elif b == 2 and empty:
            self.tx(b"\r\n")
            self._banner()
        elif b == 4 and empty:
            self.tx(b"\r\n")
            self.soft_reset()
        elif b == 5 and empty:
            self.pasted = bytearray()
            self.tx(b"\r\npaste mode; Ctrl-C to cancel, Ctrl-D to finish\r\n=== ")
        elif b == 13 or (b == 4 and not self.line):
            self.tx(b"\r\n")
            lines = self.cont + [self.line.decode(errors="replace")]
            self.line = bytearray()
            if b == 13 and _more(lines):
                self.cont = lines
                self.tx(b"... ")
                return
            self.cont = []
            if "\n".join(lines).strip():
                self._submit("\n".join(lines).encode(), "single", "friendly")
            else:
                self.tx(b">>> ")
        elif b in (8, 127):
            if self.line:
                self.line.pop()
                self.tx(b"\x08 \x08")
        elif b >= 32 or b == 9:
            self.line.append(b)
            self.tx(bytes([b]))


class VirtualBoard(ReplBridge, supervisor.Supervisor):
    """The simulated ESP32 on a pty: its bootloader picks the slot at every reset."""

    port_import = "import sim_port as _port\n"
    board_name = "simulated ESP32 module with ESP32"

    def power_up(self, cause, wake):
        loaded = self.boot(cause, wake)
        return loaded.label if loaded else None

    def soft_cause(self):
        return SOFT_RESET

    def vm_died(self):
        self.reset(HARD_RESET)  # the panic handler reboots

    def outcome(self, outcome):
        if outcome[0] == "reset":
            self.reset(HARD_RESET)
        elif outcome[0] == "deepsleep" and outcome[1]:
            self.sleep_until(outcome[1] / 1000, DEEPSLEEP_RESET)
        else:  # deep sleep with no wake-up time, or a planned power cut: the board stays off
            self.sleep_until(None, None)
            self._halt(outcome[0])


def serve(board):
    """Serve a virtual board until killed: prints the pty's path, then the [sim] lines."""
    print(board.path, flush=True)
    board.serve()


def run(flash, fs, **options):
    supervisor.lead_group()
    serve(VirtualBoard(flash, fs, **options))
