"""What the ESP32 port's C start-up does before `boot.py` (ports/esp32/main.c, mp_task), in the
unix port: the host's files go out of reach; the simulator's folder for this board is mounted
at /.sim (`hw`: the simulated hardware modules, `fw`: the firmware's frozen modules, `inbox`,
`share`, `host`: the flash file's folder) and OTASIM_FLASH names the flash file through it, so
hardware modules still find files the test side keeps beside it (OTASIM_FLASH + ".xyz");
a ROMFS partition is mounted at /rom (sim_rom); frozen `_boot` mounts the board's LittleFS
filesystem at "/".

Then files a test put in the board's inbox (host side) are moved onto that filesystem, as
`mpremote cp` would, before boot.py runs. `share` holds files a test offers the board from
outside its filesystem (a stand-in for a network peer); the board can only read them there.
"""
import os
import sys
import vfs

import esp32
import sim_rom

SIM = "/.sim"


def start(namespace):
    """Make the VM a board: from here on "/" is the board's own filesystem."""
    esp32.Partition.find()  # opens the flash file while host paths still resolve
    rom = list(sim_rom.PATHS) if sim_rom.mount() else []  # as mp_init; main.c adds "/lib" after
    board = os.getenv("OTASIM_BOARD")
    flash = os.getenv("OTASIM_FLASH")
    vfs.umount("/")
    vfs.mount(vfs.VfsPosix(board), SIM)
    os.putenv("OTASIM_FLASH", SIM + "/host/" + flash[flash.rfind("/") + 1:])
    os.chdir("/")
    sys.path[:] = [SIM + "/hw", "", SIM + "/fw", ".frozen"] + rom + ["/lib"]
    import sim_sys

    sys.modules["sys"] = sim_sys  # `import sys` from here on: the board's, platform "esp32"
    run("_boot.py", namespace, SIM + "/fw/_boot.py")  # how it ends does not matter
    if [m for m in vfs.mount() if m[1] == "/"]:
        _take_inbox(SIM + "/inbox", "")


def run(name, namespace, path=None):
    """Run one file in the REPL's namespace as pyexec_file_if_exists() does (a frozen file of
    that name first, then the filesystem's): "ok" (also when missing), "error" (the exception
    is printed) or "exit" (SystemExit: soft reset)."""
    source = None
    for candidate in (path,) if path else (SIM + "/fw/" + name, name):
        try:
            with open(candidate) as f:
                source = f.read()
            break
        except OSError:
            pass
    if source is None:
        return "ok"
    try:
        exec(compile(source, name, "exec"), namespace)
    except SystemExit:
        return "exit"
    except BaseException as exc:  # noqa: B902  (the port prints whatever it was)
        sys.print_exception(exc)
        return "error"
    return "ok"


def _take_inbox(inbox, rel):
    """Move every file under the inbox onto the board's filesystem, keeping its path."""
    try:
        entries = list(os.ilistdir(inbox + rel))
    except OSError:
        return
    buf = bytearray(1024)
    for entry in entries:
        name, kind = rel + "/" + entry[0], entry[1]
        if kind == 0x4000:
            try:
                os.mkdir(name)
            except OSError:
                pass  # already there
            _take_inbox(inbox, name)
            os.rmdir(inbox + name)
            continue
        with open(inbox + name, "rb") as src, open(name, "wb") as dst:
            while True:
                n = src.readinto(buf)
                if not n:
                    break
                dst.write(memoryview(buf)[:n])
        os.remove(inbox + name)
