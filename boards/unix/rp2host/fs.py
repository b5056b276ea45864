"""The host's hands on a simulated Pico W's filesystem, as `mpremote cp` has on a board: copy a
folder tree in, or every file out. Runs MicroPython's own LittleFS (the unix port's
`vfs.VfsLfs2`) on the storage file, formatting it first if it holds no filesystem, as the
board's first boot would."""
import os
import subprocess
import tempfile
from pathlib import Path

import rp2host
from simhost import supervisor

_SCRIPT = r"""
import os, sys, vfs, rp2
bdev = rp2.Flash()
try:
    fs = vfs.VfsLfs2(bdev, progsize=256)
except:
    vfs.VfsLfs2.mkfs(bdev, progsize=256)
    fs = vfs.VfsLfs2(bdev, progsize=256)
vfs.mount(fs, "/flash")
mode, host = sys.argv[1], sys.argv[2]

def isdir(p):
    return os.stat(p)[0] & 0x4000

def mkdirs(p):
    i = p.find("/", 1)
    while i > 0:
        try:
            os.mkdir(p[:i])
        except OSError:
            pass
        i = p.find("/", i + 1)

def copy(src, dst):
    with open(src, "rb") as a, open(dst, "wb") as b:
        while True:
            data = a.read(4096)
            if not data:
                break
            b.write(data)

def walk(top, rel=""):
    for name in os.listdir(top + "/" + rel if rel else top):
        path = rel + "/" + name if rel else name
        if isdir(top + "/" + path):
            yield from walk(top, path)
        else:
            yield path

if mode == "push":
    for rel in walk(host):
        mkdirs("/flash/" + rel)
        copy(host + "/" + rel, "/flash/" + rel)
else:
    for rel in walk("/flash"):
        mkdirs(host + "/" + rel)
        copy("/flash/" + rel, host + "/" + rel)
vfs.umount("/flash")
"""


def _run(flash, mode, host):
    env = dict(os.environ, MICROPYPATH="%s:%s" % (rp2host.MODULES, rp2host.SHARED_MODULES),
               OTASIM_FLASH=str(Path(flash).resolve()))
    env.pop("OTASIM_CUT_AT", None)
    env.pop("OTASIM_CTL_FD", None)
    proc = subprocess.run([supervisor.micropython_binary(), "-X", "heapsize=1M", "-c", _SCRIPT, mode, str(host)],
                          env=env, capture_output=True, text=True, cwd="/")
    if proc.returncode != 0:
        raise RuntimeError("board filesystem %s failed: %s" % (mode, proc.stderr or proc.stdout))


def write_files(flash, files):
    """Write {"path/on/board": bytes or str} into the board's filesystem."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            path = Path(tmp) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data.encode() if isinstance(data, str) else data)
        _run(flash, "push", tmp)


def copy_tree(flash, folder, dest=""):
    """Copy a host folder's files into the board's filesystem (under `dest`)."""
    root = Path(folder)
    write_files(flash, {(dest + "/" if dest else "") + str(p.relative_to(root)): p.read_bytes()
                        for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts})


def read_files(flash):
    """Every file on the board: {"path": bytes}."""
    with tempfile.TemporaryDirectory() as tmp:
        _run(flash, "pull", tmp)
        return {str(p.relative_to(tmp)): p.read_bytes() for p in Path(tmp).rglob("*") if p.is_file()}
