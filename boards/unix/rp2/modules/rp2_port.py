"""What the rp2 port's main() does at every (soft) reset, run under the unix port
(ports/rp2/main.c, ports/rp2/modules/_boot.py): mount LittleFS v2 on `rp2.Flash()` at `/`,
formatting it when it does not mount; `run()` then runs one boot file as
pyexec_file_if_exists() does. Used by port_main.py (a board's boot) and by the virtual board's
agent (boot files and REPL code in one VM).

The board's built-in modules (`rp2`, `machine`, `network`, `socket`) are imported before the
host's filesystem is unmounted; from then on the VM sees only the board's filesystem, with
sys.path as on the port. When the test side gives the board a Wi-Fi world (the control file
OTASIM_FLASH + ".net", see network.py) the flash file's folder is mounted at /.sim, so the
simulated radio still reads it; a board without one sees exactly its own filesystem."""
import sys

import machine  # noqa: F401  (the board's built-ins, loaded while the host files are reachable)
import network  # noqa: F401
import rp2
import socket  # noqa: F401  (the ESP32 simulator's: refused while the station has no link)
import vfs
import os


def start(namespace):
    """Make the VM a Pico W: from here on "/" is the board's own filesystem."""
    flash = os.getenv("OTASIM_FLASH")
    folder, name = flash.rsplit("/", 1)
    try:
        wifi_world = bool(os.stat(flash + ".net"))
    except OSError:
        wifi_world = False
    vfs.umount("/")
    bdev = rp2.Flash()
    try:
        fs = vfs.VfsLfs2(bdev, progsize=256)
    except:  # noqa: E722  (as _boot.py: any failure to mount formats the flash)
        vfs.VfsLfs2.mkfs(bdev, progsize=256)
        fs = vfs.VfsLfs2(bdev, progsize=256)
    vfs.mount(fs, "/")
    if wifi_world:
        vfs.mount(vfs.VfsPosix(folder), "/.sim")
        os.putenv("OTASIM_FLASH", "/.sim/" + name)
    os.chdir("/")
    sys.path[:] = ["", ".frozen", "/lib"]


def run(name, namespace):
    """Run one file in the REPL's namespace: "ok" (also when it is missing), "error" (the
    exception is printed) or "exit" (SystemExit: soft reset)."""
    try:
        with open(name) as f:
            source = f.read()
    except OSError:
        return "ok"
    try:
        exec(compile(source, name, "exec"), namespace)
    except SystemExit:
        return "exit"
    except BaseException as exc:  # noqa: B036  (the port prints it and goes on)
        sys.print_exception(exc)
        return "error"
    return "ok"
