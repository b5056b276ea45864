"""The simulated board's boot loop: bootloader rollback, deep sleep, watchdog, power cuts.

The first two tests mirror MicroPython's tests/ports/esp32/partition_ota.py."""
import hashlib
import struct

import pytest

STATE = """
import esp32, machine
P = esp32.Partition
def state():
    try:
        return open('state').read()
    except OSError:
        return ''
def save(s):
    with open('state', 'w') as f:  # LittleFS commits on close: reset() right after must not lose it
        f.write(s)
running = P(P.RUNNING)
print('running', running.info()[4], 'cause', machine.reset_cause())
"""

COPY_RUNNING_TO_NEXT = """
def copy_to_next():
    nxt = running.get_next_update()
    buf = bytearray(4096)
    for i in range(running.ioctl(4, 0)):
        running.readblocks(i, buf)
        nxt.writeblocks(i, buf)
    nxt.set_boot()
"""

INSTALL = """
import esp32
def install(path):
    nxt = esp32.Partition(esp32.Partition.RUNNING).get_next_update()
    buf = bytearray(4096)
    i = 0
    with open(path, 'rb') as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            if n < 4096:
                buf[n:] = b'\\xff' * (4096 - n)
            nxt.writeblocks(i, buf)
            i += 1
    nxt.set_boot()
"""


def history(device):
    return [(b["slot"], b["cause"], b["state"]) for b in device.boot_log()]


def slot_entry(device, seq):
    return next(e for e in device.otadata() if e["seq"] == seq)


@pytest.mark.parametrize("confirm", [False, True], ids=["unconfirmed-rolls-back", "confirmed-stays"])
def test_partition_ota_copy_set_boot_reset(sim_device, firmware, confirm):
    main = STATE + COPY_RUNNING_TO_NEXT + """
s = state()
if s == '':
    copy_to_next()
    save('switched')
    machine.reset()
elif s == 'switched':
    save('done')
    if %s:
        P.mark_app_valid_cancel_rollback()
        P.mark_app_valid_cancel_rollback()  # OK to call on every boot
    machine.reset()
""" % confirm
    device = sim_device(firmware("1.0.0"), {"main.py": main})
    console = device.run()
    assert "Traceback" not in console, console
    assert history(device) == [
        ("ota_0", "PWRON_RESET", "VALID"),
        ("ota_1", "HARD_RESET", "PENDING_VERIFY"),
        ("ota_1" if confirm else "ota_0", "HARD_RESET", "VALID"),
    ]
    assert slot_entry(device, 2)["state_name"] == ("VALID" if confirm else "ABORTED")
    assert device.read_partition("ota_1") == device.read_partition("ota_0")
    assert console.rstrip().endswith("[sim] halt reason=idle boots=3")


def test_new_pending_aborted_across_power_cycles(sim_device, firmware):
    device = sim_device(firmware("1.0.0"), {"main.py": STATE + COPY_RUNNING_TO_NEXT + "copy_to_next()\n"})
    device.run()
    assert [(e["seq"], e["state_name"]) for e in device.otadata()] == [(1, "VALID"), (2, "NEW")]
    device.write_files({"main.py": STATE})
    device.run()  # power on: NEW becomes PENDING_VERIFY and ota_1 runs once
    assert [(e["seq"], e["state_name"]) for e in device.otadata()] == [(1, "VALID"), (2, "PENDING_VERIFY")]
    device.run()  # power lost before confirming: ABORTED, back to ota_0
    assert [(e["seq"], e["state_name"]) for e in device.otadata()] == [(1, "VALID"), (2, "ABORTED")]
    assert history(device) == [("ota_0", "PWRON_RESET", "VALID"), ("ota_1", "PWRON_RESET", "PENDING_VERIFY"),
                               ("ota_0", "PWRON_RESET", "VALID")]


def test_deep_sleep_wake_skips_the_otadata_state_machine(sim_device, firmware):
    main = STATE + COPY_RUNNING_TO_NEXT + """
s = state()
step = {'': 'a', 'a': 'b', 'b': 'c', 'c': 'd', 'd': 'e'}[s]
save(step)
if step == 'a':
    copy_to_next()
    machine.deepsleep(50)   # wake: still the old image, set_boot notwithstanding
elif step == 'b':
    machine.reset()
elif step == 'c':
    machine.deepsleep(50)   # trial image sleeps: not rolled back on wake
elif step == 'd':
    machine.reset()
"""
    device = sim_device(firmware("1.0.0"), {"main.py": main})
    console = device.run()
    assert "Traceback" not in console, console
    assert history(device) == [
        ("ota_0", "PWRON_RESET", "VALID"),
        ("ota_0", "DEEPSLEEP_RESET", "VALID"),
        ("ota_1", "HARD_RESET", "PENDING_VERIFY"),
        ("ota_1", "DEEPSLEEP_RESET", "PENDING_VERIFY"),
        ("ota_0", "HARD_RESET", "VALID"),
    ]
    assert "cause 4" in console


def test_deepsleep_forever_halts(sim_device, firmware):
    device = sim_device(firmware("1.0.0"), {"main.py": "import machine\nmachine.deepsleep()\nprint('never')\n"})
    console = device.run(halt_on_idle=False)
    assert "never" not in console
    assert console.rstrip().endswith("[sim] halt reason=deepsleep boots=1")


def test_watchdog_expires_unless_fed(sim_device, firmware):
    main = STATE + """
import time
s = state()
save(s + 'x')
if s == '':
    machine.WDT(timeout=300)
    time.sleep(1)
    print('not reached')
elif s == 'x':
    w = machine.WDT(timeout=600)
    for _ in range(15):       # 1.5 s in all: well past the timeout
        time.sleep_ms(100)
        w.feed()
    print('survived')       # then idle at the REPL: nobody feeds, the WDT fires
elif s == 'xx':
    machine.WDT(timeout=60000)
    machine.WDT(timeout=200)  # a second WDT() reconfigures
    time.sleep(2)
    print('not reached')
"""
    device = sim_device(firmware("1.0.0"), {"main.py": main})
    console = device.run()
    assert "not reached" not in console
    assert console.count("survived") == 1
    assert [b["cause"] for b in device.boot_log()] == ["PWRON_RESET", "WDT_RESET", "WDT_RESET", "WDT_RESET"]


def test_watchdog_and_machine_api(sim_snippet):
    out = sim_snippet("""
import machine
for t in (0, -5):
    try:
        machine.WDT(timeout=t)
    except ValueError:
        print('ValueError')
print(machine.reset_cause(), machine.PWRON_RESET, machine.HARD_RESET, machine.WDT_RESET,
      machine.DEEPSLEEP_RESET, machine.SOFT_RESET)
print(len(machine.unique_id()), machine.freq())
machine.freq(240000000)
print(machine.freq(), machine.mem32, machine.Signal)
""", cause=3).stdout.splitlines()
    assert out[:2] == ["ValueError", "ValueError"]
    assert out[2] == "3 1 2 3 4 5"
    assert out[3] == "6 160000000"
    assert out[4].startswith("240000000 ")


@pytest.mark.parametrize("bad_boot", [
    "import machine\nmachine.reset()\n",
    "import machine\nmachine.WDT(timeout=300)\nwhile True:\n    pass\n",
], ids=["resets", "hangs"])
def test_firmware_whose_boot_fails_is_rolled_back(sim_device, firmware, bad_boot):
    main = STATE + """
from fwtool import install
if state() == '':
    save('installed')
    install('v2.bin')
    machine.reset()
"""
    device = sim_device(firmware("1.0.0"), {"main.py": main, "lib/fwtool.py": INSTALL,
                                            "v2.bin": firmware("2.0.0", {"_boot": bad_boot})})
    device.run(timeout=20)
    third_cause = "HARD_RESET" if "reset()" in bad_boot else "WDT_RESET"
    assert [(b["slot"], b["version"], b["cause"]) for b in device.boot_log()] == [
        ("ota_0", "1.0.0", "PWRON_RESET"), ("ota_1", "2.0.0", "HARD_RESET"), ("ota_0", "1.0.0", third_cause)]
    assert slot_entry(device, 2)["state_name"] == "ABORTED"


def test_image_that_set_boot_accepts_but_cannot_load_falls_back(sim_device, firmware):
    good = firmware("2.0.0")
    bad = bytearray(good[:-32])
    struct.pack_into("<I", bad, 24, 0x20000020)  # segment 0 load address: not ESP32 memory
    bad = bytes(bad) + hashlib.sha256(bad).digest()
    main = STATE + """
from fwtool import install
if state() == '':
    save('installed')
    install('v2.bin')
    print('set_boot accepted it')
    machine.reset()
"""
    device = sim_device(firmware("1.0.0"), {"main.py": main, "lib/fwtool.py": INSTALL, "v2.bin": bad})
    console = device.run()
    assert "set_boot accepted it" in console
    assert "[sim] bootloader: ota_1: invalid app image" in console
    assert [(b["slot"], b["cause"]) for b in device.boot_log()] == [("ota_0", "PWRON_RESET"), ("ota_0", "HARD_RESET")]
    assert slot_entry(device, 2)["state_name"] == "PENDING_VERIFY"  # the bootloader marked it, then fell back
    device.run()
    assert slot_entry(device, 2)["state_name"] == "ABORTED"


def test_power_cut_mid_write_leaves_the_running_slot_and_boots(sim_device, firmware):
    v1 = firmware("1.0.0", {"app": "x = 1\n"})
    main = STATE + """
import time
nxt = running.get_next_update()
buf = bytearray(4096)
with open('v2.bin', 'rb') as f:
    for i in range(160):
        f.readinto(buf)
        nxt.writeblocks(i, buf)
        if i % 16 == 0:
            print('block', i)
            time.sleep_ms(5)
print('written')
"""
    device = sim_device(v1, {"main.py": main, "v2.bin": firmware("2.0.0", size=160 * 4096)})
    ota_0 = device.read_partition("ota_0")
    otadata = device.otadata()
    device.start()
    device.wait_for(r"^block 80$")
    device.power_cut()
    assert "written" not in device.console
    ota_1 = device.read_partition("ota_1")
    assert ota_1[:80 * 4096] != b"\xff" * 80 * 4096 and ota_1[-4096:] == b"\xff" * 4096
    assert device.read_partition("ota_0") == ota_0
    device.write_files({"main.py": STATE})
    console = device.run()
    assert device.boot_log()[-1] == {"n": 1, "slot": "ota_0", "cause": "PWRON_RESET", "version": "1.0.0",
                                     "state": "VALID"}
    assert "running ota_0 cause 1" in console
    assert [(e["seq"], e["state_name"]) for e in otadata] == [(0xFFFFFFFF, "UNDEFINED")] * 2
    assert [(e["seq"], e["state_name"]) for e in device.otadata()] == [(1, "VALID"), (0xFFFFFFFF, "UNDEFINED")]


def test_boot_py_error_means_main_py_does_not_run(sim_device, firmware):
    """ports/esp32/main.c (v1.22 on): main.py runs only when boot.py ended without an exception."""
    device = sim_device(firmware("1.0.0", {"fwmod": "print('frozen module')\n"}),
                        {"boot.py": "import fwmod\nprint('boot')\nraise ValueError('bad boot')\n",
                         "main.py": "print('main')\n"})
    console = device.run()
    assert console.index("Performing initial setup") < console.index("frozen module") < console.index("\nboot\n")
    assert "ValueError: bad boot" in console and 'File "boot.py", line 3' in console
    assert "\nmain" not in console
    assert console.rstrip().endswith("[sim] halt reason=idle boots=1")
    device.write_files({"boot.py": "print('boot ok')\n"})
    seen = len(console)
    assert "\nmain\n" in device.run()[seen:]


def test_first_boot_sets_up_the_filesystem_as_inisetup_does(sim_device, firmware):
    """A fresh board: frozen _boot cannot mount the erased vfs partition, so inisetup makes a
    LittleFS v2 filesystem with a boot.py; the next boot just mounts it."""
    device = sim_device(firmware("1.0.0"))
    device.write_files({"main.py": "import os, vfs\nprint(sorted(os.listdir('/')), vfs.mount())\n"
                                   "print(repr(open('boot.py').read()))\n"})
    first = device.run()
    assert first.count("Performing initial setup") == 1
    assert "['.sim', 'boot.py', 'main.py'] [(<VfsPosix>, '/.sim'), (<VfsLfs2>, '/')]" in first
    assert "'# This file is executed on every boot (including wake-boot from deepsleep)\\n#import esp" in first
    seen = len(first)
    assert "Performing initial setup" not in device.run()[seen:]
    fs = device.read_partition("vfs")
    assert b"littlefs" in fs[:4096] and len(fs) == 0xF0000


def test_soft_reset_keeps_the_slot_and_the_watchdog(sim_device, firmware):
    main = STATE + """
import sys
if machine.reset_cause() == machine.PWRON_RESET:
    machine.WDT(timeout=400)
    sys.exit()
print('after soft reset')
"""
    device = sim_device(firmware("1.0.0"), {"main.py": main})
    console = device.run(max_boots=1)
    assert "[sim] soft reset" in console and "running ota_0 cause 5" in console
    assert console.rstrip().endswith("[sim] halt reason=max-boots boots=1")  # the WDT fired after idling


def test_devices_run_side_by_side(sim_device, firmware):
    main = "import machine, time\ntime.sleep_ms(300)\nprint('uid', machine.unique_id())\n"
    a = sim_device(firmware("1.0.0"), {"main.py": main})
    b = sim_device(firmware("2.0.0"), {"main.py": main})
    a.start(halt_on_idle=True)
    b.start(halt_on_idle=True)
    ca, cb = a.wait(), b.wait()
    assert a.boot_log()[0]["version"] == "1.0.0" and b.boot_log()[0]["version"] == "2.0.0"
    uid = lambda text: next(line for line in text.splitlines() if line.startswith("uid"))  # noqa: E731
    assert uid(ca) != uid(cb)
