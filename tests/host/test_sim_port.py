"""Smaller ways the simulated board follows the esp32 port: sys.platform, deepsleep(0), arguments
the port refuses, errors with the heap locked, and set_boot's image check."""
import hashlib
import struct

import pytest

from plugin_sim import blank_flash

PLATFORM_AND_HEAP = """
import sys, micropython, esp32
print('platform', sys.platform, sys.implementation.name)
p = esp32.Partition('ota_1')
data = b'x' * 100
def locked():  # a function: a new global in main's namespace could need a bigger dict
    micropython.heap_lock()
    try:
        p.writeblocks(0, data)      # erase of 100 bytes: ESP_ERR_INVALID_SIZE
    except OSError as e:
        micropython.heap_unlock()
        print('locked', e.args, e.errno)
locked()
try:
    p.writeblocks(0, data)
except OSError as e:
    print('unlocked', e.args)
"""


def test_platform_is_esp32_and_errors_with_the_heap_locked_are_bare(sim_device, firmware):
    """check_esp_err() (ports/esp32/mphalport.c) cannot allocate the name with the heap locked
    and raises OSError with no arguments (the port's emergency exception buffer is empty)."""
    device = sim_device(firmware("1.0.0"), {"main.py": PLATFORM_AND_HEAP})
    lines = device.run().splitlines()
    assert "platform esp32 micropython" in lines
    assert "locked () None" in lines
    assert "unlocked (-260, 'ESP_ERR_INVALID_SIZE')" in lines


def test_keyword_arguments_the_port_refuses(sim_snippet):
    out = sim_snippet("""
import esp32, machine
P = esp32.Partition
def show(f, *a, **k):
    try:
        f(*a, **k)
        print('ok')
    except TypeError:
        print('TypeError')
show(P, 'ota_0', block_size=512)          # mp_arg_check_num(..., 1, 2, false): no keywords
show(P, 'ota_0', 512)
show(P.find, P.TYPE_APP, block_size=512)  # find parses keywords
show(machine.deepsleep, ms=10)            # MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN: positional only
show(machine.WDT, timeout=0)
""", check=False).stdout.split()
    assert out[:4] == ["TypeError", "ok", "ok", "TypeError"]


def test_deepsleep_zero_wakes_at_once_and_no_argument_sleeps_for_good(sim_device, firmware):
    main = """
import machine
cause = machine.reset_cause()
print('cause', cause)
if cause == machine.PWRON_RESET:
    machine.deepsleep(0)   # the timer is armed with 0 us: the board wakes straight away
machine.deepsleep()        # no wake-up source at all
"""
    device = sim_device(firmware("1.0.0"), {"main.py": main})
    console = device.run(halt_on_idle=False)
    assert [b["cause"] for b in device.boot_log()] == ["PWRON_RESET", "DEEPSLEEP_RESET"]
    assert "cause 4" in console
    assert console.rstrip().endswith("[sim] halt reason=deepsleep boots=2")


def tiny_image():
    """A valid ESP32 app image whose only segment is 16 bytes (in DRAM): esp_image_verify has no
    minimum segment size, so set_boot() must take it."""
    header = struct.pack("<BBBBIB3sHBHH4sB", 0xE9, 1, 2, 0x20, 0x40080000, 0xEE, b"\0\0\0", 0, 0, 0, 399,
                         b"\0" * 4, 1)
    data = bytes(range(16))
    body = header + struct.pack("<II", 0x3FFB0000, len(data)) + data
    checksum = 0xEF
    for b in data:
        checksum ^= b
    padded = body + b"\0" * (15 - len(body) % 16) + bytes([checksum])
    return padded + hashlib.sha256(padded).digest()


def test_set_boot_takes_what_esp_image_verify_takes(sim_snippet):
    blank_flash(sim_snippet.flash, tiny_image())
    out = sim_snippet("""
import esp32
buf = bytearray(4096)
esp32.Partition('ota_0').readblocks(0, buf)
nxt = esp32.Partition('ota_1')
nxt.writeblocks(0, buf)
nxt.set_boot()
print(esp32.Partition(esp32.Partition.BOOT).info()[4])
""").stdout.split()
    assert out == ["ota_1"]


def test_every_image_offers_the_real_builds_frozen_modules(sim_device, firmware):
    """ports/esp32/boards/manifest.py freezes asyncio and the board glue into every build; an
    image's own module of the same name wins, as a custom build's would."""
    main = """
import asyncio, requests, mip, flashbdev, inisetup
print('frozen ok', flashbdev.bdev.info()[4])
import fwinfo
print('image module', fwinfo.NAME)
"""
    device = sim_device(firmware("1.0.0", {"fwinfo": "NAME = 'mine'\n"}), {"main.py": main})
    lines = device.run().splitlines()
    assert "frozen ok vfs" in lines and "image module mine" in lines
    custom = sim_device(firmware("1.0.0", {"_boot": "print('custom _boot')\n"}), {"main.py": main})
    console = custom.run()
    assert "custom _boot" in console  # this build's _boot mounts nothing: no main.py runs
    assert "frozen ok" not in console and "Performing initial setup" not in console


def test_the_host_reads_and_changes_the_boards_littlefs(sim_device, firmware):
    device = sim_device(firmware("1.0.0"), {"main.py": "import os\nos.mkdir('d')\nwith open('d/x', 'wb') as f:\n"
                                                      "    f.write(b'\\x00\\x01board')\n"})
    device.run()
    assert device.read_file("d/x") == b"\x00\x01board"
    assert device.listdir("/") == ["boot.py", "d", "main.py"]
    device.remove_path("d")
    assert device.listdir("/") == ["boot.py", "main.py"]
    with pytest.raises(OSError):
        device.read_file("d/x")
