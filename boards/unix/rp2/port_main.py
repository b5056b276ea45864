"""What the rp2 port's main() does at every (soft) reset, run under the unix port
(ports/rp2/main.c, ports/rp2/modules/_boot.py): mount LittleFS v2 on `rp2.Flash()` at `/`,
formatting it when it does not mount, then run `boot.py` and, only if boot.py ended without an
exception, `main.py`. SystemExit asks for a soft reset.

The simulator's built-ins (`rp2`, `machine`) are imported before the host's filesystem is
unmounted; from then on the VM sees only the board's filesystem, with sys.path as on the port."""
import sys

sys.path.insert(0, __file__.rsplit("/", 1)[0] + "/modules")  # rp2's built-ins before the ESP32 ones
import machine  # noqa: F401  (the board's built-ins, loaded while the host files are reachable)
import rp2
import sim_link
import vfs
import os

vfs.umount("/")
bdev = rp2.Flash()
try:
    fs = vfs.VfsLfs2(bdev, progsize=256)
except:  # noqa: E722  (as _boot.py: any failure to mount formats the flash)
    vfs.VfsLfs2.mkfs(bdev, progsize=256)
    fs = vfs.VfsLfs2(bdev, progsize=256)
vfs.mount(fs, "/")
os.chdir("/")
del bdev, fs
sys.path[:] = ["", ".frozen", "/lib"]
_globals = {"__name__": "__main__"}


def _run(path):
    """pyexec_file_if_exists(): 1 when the file ran to its end or is missing, 0 after an
    exception (printed), "soft" after SystemExit."""
    try:
        with open(path) as f:
            source = f.read()
    except OSError:
        return 1
    try:
        exec(compile(source, path, "exec"), _globals)
    except SystemExit:
        return "soft"
    except BaseException as exc:  # noqa: B036  (the port prints it and goes on)
        sys.print_exception(exc)
        return 0
    return 1


_ret = _run("boot.py")
if _ret == 1:
    _ret = _run("main.py")
if _ret == "soft":
    sim_link.send("soft")
