"""The rp2 (Pico W) simulator behaves as the rp2 port does where the OTA code depends on it
(docs/SIMULATOR.md, rp2 section): the watchdog's limit and its board-time model, reset causes,
boot.py and main.py, the flash's NOR rules and torn operations, LittleFS on rp2.Flash()."""
import json

import pytest

import mpunix
from rp2_env import Rp2Device, rp2_device  # noqa: F401
from rp2host import board as rp2board
import rp2host

BLOCKS = rp2board.STORAGE_BYTES // 4096


def _snippet(flash, code):
    """Device code against the storage file, without the boot loop."""
    return mpunix.run(code, path=(rp2host.MODULES, rp2host.SHARED_MODULES), env={"OTASIM_FLASH": str(flash)}).stdout


def test_flash_is_nor_with_the_ports_block_device_interface(tmp_path):
    flash = tmp_path / "flash.bin"
    rp2board.new_board(flash)
    out = _snippet(flash, """
import rp2
f = rp2.Flash()
print(f.ioctl(4, 0), f.ioctl(5, 0), f.ioctl(1, 0), f.ioctl(3, 0), f.ioctl(99, 0))
f.writeblocks(2, bytes([0xF0]) * 4096)          # 3 arguments: erase, then program
f.writeblocks(2, bytes([0x3C]) * 256, 256)      # 4 arguments: program only, bits only clear
b = bytearray(512)
f.readblocks(2, b)
print(hex(b[0]), hex(b[256]))
f.ioctl(6, 2)
f.readblocks(2, b)
print(hex(b[0]), hex(b[300]))
for call in (lambda: f.writeblocks(2, b"x" * 100, 0), lambda: f.writeblocks(2, b"x" * 256, 8),
             lambda: f.writeblocks(2, b"x" * 256), lambda: f.readblocks(%d, bytearray(1)),
             lambda: rp2.Flash(start=100), lambda: rp2.Flash(len=4096 * (%d + 1))):
    try:
        call()
        print("accepted")
    except ValueError:
        print("ValueError")
part = rp2.Flash(start=8192, len=8192)
print(part.ioctl(4, 0))
""" % (BLOCKS, BLOCKS))
    lines = out.split()
    assert lines[:5] == [str(BLOCKS), "4096", "0", "0", "None"]
    assert lines[5:7] == ["0xf0", "0x30"]  # 0xF0 AND 0x3C
    assert lines[7:9] == ["0xff", "0xff"]
    assert lines[9:15] == ["ValueError"] * 6
    assert lines[15] == "2"


def test_watchdog_limit_reset_causes_and_boot_files(rp2_device):
    device = rp2_device({
        "boot.py": "import machine\nprint('cause', machine.reset_cause(), hasattr(machine, 'HARD_RESET'))\n",
        "main.py": (
            "import machine, os\n"
            "for t in (8389, 100000):\n"
            "    try:\n        machine.WDT(timeout=t)\n        print('accepted', t)\n"
            "    except ValueError:\n        print('refused', t)\n"
            "print('uid', len(machine.unique_id()))\n"
            "n = len(os.listdir()) \n"
            "open('mark%d' % n, 'w').close()\n"
            "if n == 2:\n    machine.reset()\n"
            "if n == 3:\n    machine.WDT(timeout=300)\n"  # never fed: expires at the REPL
        ),
    })
    console = device.run(timeout=30, halt_on_idle=True)
    assert [b["cause"] for b in device.boot_log()] == ["PWRON_RESET", "WDT_RESET", "WDT_RESET"]
    assert console.count("cause 1 False") == 1 and console.count("cause 3 False") == 2
    assert "refused 8389" in console and "refused 100000" in console and "accepted" not in console
    assert "uid 8" in console
    assert device.wdt_record()["idle_expiries"] == 1  # armed, never fed, at the REPL


def test_boot_py_exception_skips_main_and_the_watchdog_still_resets(rp2_device):
    device = rp2_device({"boot.py": "import machine\nw = machine.WDT(timeout=200)\nprint('boot ran')\nraise OSError(5)\n",
                         "main.py": "print('main ran')\n"})
    console = device.run(timeout=30, max_boots=2, halt_on_idle=True)
    assert console.count("boot ran") == 2 and "main ran" not in console
    assert [b["cause"] for b in device.boot_log()] == ["PWRON_RESET", "WDT_RESET"]


def test_flash_time_counts_against_the_watchdog(rp2_device):
    """Five sector erases (400 ms each at the data sheet's worst) between two feeds of a 1 s
    watchdog: the board resets, however fast the host ran them."""
    device = rp2_device({"main.py": (
        "import machine, rp2, os\n"
        "if 'done' not in os.listdir():\n"
        "    open('done', 'w').close()\n"
        "    w = machine.WDT(timeout=1000)\n"
        "    f = rp2.Flash(start=4096 * 200, len=4096 * 10)\n"
        "    for i in range(5):\n        f.ioctl(6, i)\n"
        "    w.feed()\n"
        "    print('survived')\n"
    )})
    console = device.run(timeout=30, halt_on_idle=True)
    assert "survived" not in console
    record = device.wdt_record()
    assert record["gaps_over"] == 1 and record["max_gap_ms"] >= 2000
    assert [b["cause"] for b in device.boot_log()] == ["PWRON_RESET", "WDT_RESET"]


@pytest.mark.parametrize("cut_at", [1, 2])
def test_a_cut_tears_the_flash_operation_it_lands_in(rp2_device, cut_at):
    """After mounting (reads only), the first operation is a sector erase, the second a page
    program: the cut leaves either half done, and the board powers on again."""
    device = rp2_device({"main.py": (
        "import rp2, os\n"
        "if 'again' in os.listdir():\n    raise SystemExit\n"
        "f = rp2.Flash(start=4096 * 205, len=4096)\n"
        "f.ioctl(6, 0)\nf.writeblocks(0, bytes(256), 0)\nprint('not reached')\n"
    )})
    raw = bytearray(device.flash.read_bytes())
    raw[205 * 4096:206 * 4096] = bytes(4096)  # the sector starts all zero
    device.flash.write_bytes(raw)
    device.cut_at = cut_at
    console = device.run(timeout=30, max_boots=1, halt_on_idle=True)
    assert "power cut after %d flash operations" % cut_at in console and "not reached" not in console
    sector = device.flash.read_bytes()[205 * 4096:206 * 4096]
    if cut_at == 1:  # torn erase: some bits set, not all
        assert sector != bytes(4096) and sector != b"\xff" * 4096
    else:  # erase done, the page program torn: some bits of the page cleared, not all
        assert sector[256:] == b"\xff" * (4096 - 256)
        assert sector[:256] != b"\xff" * 256 and sector[:256] != bytes(256)


def test_littlefs_is_formatted_on_first_boot_and_persists(rp2_device):
    device = rp2_device()
    device.write_files({"main.py": "import os\nprint('files', sorted(os.listdir()), os.statvfs('/')[2])\n"
                                   "with open('count', 'a') as f:\n    f.write('x')\n"})
    device.run(timeout=30, halt_on_idle=True)
    device.run(timeout=30, halt_on_idle=True)
    assert "files ['main.py'] %d" % BLOCKS in device.console
    assert "files ['count', 'main.py']" in device.console
    assert device.read_files()["count"] == b"xx"
