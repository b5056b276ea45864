"""The board's LittleFS seen from the host while the board is off: MicroPython's own
`vfs.VfsLfs2` (the unix port) over the flash file's `vfs` partition, through the simulator's
`esp32.Partition`, so the host reads exactly what the board would."""
import json
import os
import subprocess

import simhost
from simhost import supervisor

_SCRIPT = r"""
import binascii, esp32, json, os, sys, vfs
bdev = esp32.Partition.find(esp32.Partition.TYPE_DATA, label="vfs")[0]
vfs.mount(vfs.VfsLfs2(bdev), "/board")
op, path = os.getenv("BOARDFS_OP"), "/board/" + os.getenv("BOARDFS_PATH").strip("/")

def remove(p):
    if os.stat(p)[0] & 0x4000:
        for name in os.listdir(p):
            remove(p + "/" + name)
        os.rmdir(p)
    else:
        os.remove(p)

try:
    if op == "read":
        with open(path, "rb") as f:
            print(binascii.hexlify(f.read()).decode())
    elif op == "list":
        print(json.dumps(sorted(os.listdir(path))))
    elif op == "remove":
        remove(path)
        print("ok")
except OSError as e:
    print("error %d" % e.errno)
"""


def _run(flash, op, path, table):
    env = dict(os.environ, MICROPYPATH=str(simhost.MODULES), OTASIM_FLASH=str(flash),
               OTASIM_PARTITIONS=str(table), BOARDFS_OP=op, BOARDFS_PATH=path)
    env.pop("OTASIM_CTL_FD", None)
    proc = subprocess.run([supervisor.micropython_binary(), "-c", _SCRIPT], env=env, capture_output=True,
                          text=True, timeout=60)
    out = proc.stdout.strip()
    if proc.returncode != 0:
        raise OSError("the board's filesystem cannot be read: " + (proc.stderr.strip() or out))
    if out.startswith("error "):
        raise OSError(int(out.split()[1]), "%s on the board" % path)
    return out


def read(flash, path, table=simhost.PARTITIONS):
    """The bytes of the board's file `path`; OSError(ENOENT) when it is missing. `table`: the
    board's partition table, which places its filesystem."""
    return bytes.fromhex(_run(flash, "read", path, table))


def listdir(flash, path="/", table=simhost.PARTITIONS):
    return json.loads(_run(flash, "list", path, table))


def remove(flash, path, table=simhost.PARTITIONS):
    """Delete a file or a whole folder from the board."""
    _run(flash, "remove", path, table)
