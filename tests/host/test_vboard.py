"""The virtual board's REPL bridge (boards/unix/simhost/vboard.py), byte for byte over its pty
with pyserial as mpremote opens it, and through the real mpremote CLI."""
import random
import time

import pytest
import serial

from tests.device.virtualboard import VirtualBoardProcess, mpremote
from mpota import fwimage

RAW = b"raw REPL; CTRL-B to exit\r\n>"


@pytest.fixture
def vboard(tmp_path):
    """Factory: `vboard(files=None, modules=None)` -> a started VirtualBoardProcess."""
    made = []

    def make(files=None, modules=None):
        board = VirtualBoardProcess(tmp_path / ("b%d" % len(made)), fwimage.build_image("2.0.0", modules or {}), files)
        made.append(board)
        board.start()
        return board

    yield make
    for board in made:
        board.stop()


class Wire:
    """The host end of the pty, as mpremote's pyserial sees it."""

    def __init__(self, port):
        self.s = serial.Serial(port, 115200, timeout=0.05)
        self.seen = b""

    def send(self, data):
        self.s.write(data)

    def expect(self, ending, timeout=10):
        end = time.monotonic() + timeout
        while not self.seen.endswith(ending):
            if time.monotonic() > end:
                raise AssertionError("expected %r, got %r" % (ending, self.seen))
            self.seen += self.s.read(1)
        out, self.seen = self.seen, b""
        return out


def test_raw_repl_protocol_state_and_soft_reset(vboard):
    board = vboard(files={"boot.py": "print('boot ran')\n"})
    w = Wire(board.port)
    w.expect(b">>> ")  # booted: a Ctrl-C that lands as boot.py ends can tear the agent's next header
    w.send(b"\r\x03\r\x01")
    w.expect(RAW)
    w.send(b"x = 21\x04")
    assert w.expect(b">") == b"OK\x04\x04>"
    w.send(b"print(x * 2)\x04")
    assert w.expect(b">") == b"OK42\r\n\x04\x04>"
    w.send(b"def f():\n  1/0\nf()\x04")
    assert w.expect(b"\x04>") == (b"OK\x04Traceback (most recent call last):\r\n"
                                  b"  File \"<stdin>\", line 3, in <module>\r\n"
                                  b"  File \"<stdin>\", line 2, in f\r\nZeroDivisionError: divide by zero\r\n\x04>")
    w.send(b"\x04")  # empty: soft reset, boot.py again, back in the raw REPL
    assert w.expect(RAW) == b"OK\r\nMPY: soft reboot\r\nboot ran\r\n" + RAW
    w.send(b"print(x)\x04")
    assert b"NameError" in w.expect(b"\x04>")
    w.send(b"\x02")
    assert w.expect(b">>> ").startswith(b"\r\nMicroPython 2.0.0 on vboard")
    assert "soft reset" in board.log()


def test_raw_paste_flow_control_and_unsupported_variant(vboard):
    w = Wire(vboard().port)
    w.send(b"\r\x01")
    w.expect(RAW)
    w.send(b"\x05A\x01")
    time.sleep(0.2)
    assert w.s.read(5) == b"R\x01\x80\x00\x01"  # a 128-byte window, two windows free
    body = b"s = 0\n" + b"s += 1\n" * 50 + b"print(s)"  # 364 bytes
    w.send(body[:256])
    time.sleep(0.2)
    assert w.s.read(10) == b"\x01\x01"  # both windows consumed and handed back
    w.send(body[256:] + b"\x04")
    assert w.expect(b"\x04>") == b"\x0450\r\n\x04\x04>"
    w.send(b"\x05B\x01")
    assert w.expect(b">") == b"R\x00>"


def test_friendly_repl_echo_compound_statements_and_ctrl_keys(vboard):
    w = Wire(vboard().port)
    w.send(b"\x02")
    time.sleep(0.3)
    w.s.reset_input_buffer()
    w.send(b"1+2\r")
    assert w.expect(b">>> ") == b"1+2\r\n3\r\n>>> "
    w.send(b"for i in range(2):\r")
    w.expect(b"... ")
    w.send(b"  print(i)\r\r")
    assert w.expect(b">>> ").endswith(b"0\r\n1\r\n>>> ")
    w.send(b"abc\x03")
    assert w.expect(b">>> ") == b"abc\r\n>>> "
    w.send(b"\x05")
    w.expect(b"=== ")
    w.send(b"y = 7\rprint(y)\x04")
    assert w.expect(b">>> ").endswith(b"7\r\n>>> ")


def test_ctrl_c_interrupts_main_py_and_running_code(vboard):
    board = vboard(files={"main.py": "import time\nprint('main starts')\nwhile True:\n    time.sleep_ms(10)\n"})
    w = Wire(board.port)
    time.sleep(0.3)  # main.py runs (what it printed before the port was opened is gone)
    w.send(b"\r\x03")
    out = w.expect(b">>> ")
    assert b"KeyboardInterrupt" in out and b"MicroPython 2.0.0" in out
    w.send(b"\r\x01")
    w.expect(RAW)
    w.send(b"\x04")  # a soft reset from the raw REPL skips main.py, as the firmware does
    assert b"main starts" not in w.expect(RAW)
    w.send(b"while True:\n  pass\x04")
    w.expect(b"OK")
    time.sleep(0.2)
    w.send(b"\x03")
    assert w.expect(b"\x04>").endswith(b"KeyboardInterrupt: \r\n\x04>")
    w.send(b"print('alive')\x04")
    assert w.expect(b">") == b"OKalive\r\n\x04\x04>"


def test_mpremote_files_state_and_resets(vboard, tmp_path):
    board = vboard(modules={"fwinfo": "NAME = 'frozen'\n"})
    port = board.port
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "data.bin").write_bytes(bytes(range(256)) * 40)
    (src / "a.py").write_text("VALUE = 5\n")
    mpremote(port, "fs", "mkdir", ":lib")
    mpremote(port, "fs", "cp", "-r", src, ":lib/")
    mpremote(port, "fs", "cp", ":lib/src/sub/data.bin", tmp_path / "back.bin")  # from the board's LittleFS
    assert (tmp_path / "back.bin").read_bytes() == bytes(range(256)) * 40
    assert "a.py" in mpremote(port, "fs", "ls", ":lib/src").stdout
    assert mpremote(port, "fs", "cat", ":lib/src/a.py").stdout == "VALUE = 5\n"
    out = mpremote(port, "exec", "import src.a, fwinfo", "eval", "(src.a.VALUE * 2, fwinfo.NAME)").stdout
    assert out.strip() == "(10, 'frozen')"
    mpremote(port, "fs", "rm", "-r", ":lib/src")
    assert "src" not in mpremote(port, "fs", "ls", ":lib").stdout
    err = mpremote(port, "exec", "import nothing_here", check=False)
    assert err.returncode == 1 and "ImportError" in err.stdout
    mpremote(port, "soft-reset")
    mpremote(port, "reset")
    board.wait_boots(2)
    # every mpremote session begins with a soft reset, so the cause is SOFT_RESET after the hard one
    assert mpremote(port, "eval", "__import__('machine').reset_cause()").stdout.strip() == "5"
    assert [b["cause"] for b in board.boot_log()] == ["PWRON_RESET", "HARD_RESET"]


def test_watchdog_at_the_idle_repl_and_deep_sleep_reboot_the_board(vboard):
    board = vboard()
    mpremote(board.port, "exec", "import machine; machine.WDT(timeout=300)")
    board.wait_boots(2, timeout=10)
    mpremote(board.port, "exec", "--no-follow", "import machine; machine.deepsleep(200)")
    board.wait_boots(3, timeout=10)
    assert [b["cause"] for b in board.boot_log()] == ["PWRON_RESET", "WDT_RESET", "DEEPSLEEP_RESET"]
    assert mpremote(board.port, "eval", "1 + 1").stdout.strip() == "2"


def _at_prompt(w, board):
    """Ctrl-C until the friendly prompt shows and nothing more comes (the first Ctrl-C may
    have gone to boot.py, and then main.py runs). A failure shows the board's own log."""
    for _ in range(100):
        w.seen += w.s.read(4096)
        if w.seen.endswith(b">>> "):
            w.seen += w.s.read(4096)  # 50 ms of quiet: that prompt was the last word
            if w.seen.endswith(b">>> "):
                w.seen = b""
                return
        else:
            w.send(b"\x03")
            time.sleep(0.2)
    raise AssertionError("no prompt: %r\nthe board's log:\n%s" % (w.seen[-300:], board.log()[-3000:]))


def test_ctrl_c_as_boot_py_ends_never_tears_the_next_piece_of_code(vboard):
    """A Ctrl-C meant for boot.py that reaches the VM just after boot.py ended lands in the
    bridge's own loop while main.py is being handed over: it must cost nothing but itself
    (before the sync protocol it tore main.py's header and the VM died). Many soft resets,
    each interrupted at a random moment of boot.py's end, then the board still answers."""
    board = vboard(files={"boot.py": "print('boot ran')\n", "main.py": "import time\nwhile True:\n    time.sleep_ms(5)\n"})
    w = Wire(board.port)
    rng = random.Random(7)
    for _ in range(40):
        w.send(b"\x04")  # soft reset: boot.py, then main.py (a loop) unless interrupted
        time.sleep(rng.random() * 0.08)
        w.send(b"\x03")
        _at_prompt(w, board)
    w.send(b"\x01print(6 * 7)\x04")
    assert w.expect(b"\x04>").startswith(b"\r\nraw REPL; CTRL-B to exit\r\n>OK42\r\n")
    assert "panic" not in board.log() and len(board.boot_log()) == 1, board.log()
