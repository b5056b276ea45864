"""Host side of app bundles: pack a folder of files into the bundle a device installs
(docs/FORMAT.md section 6; the device side is `lib/ota/bundle.py`).

`build(folder, arch=None)`: every file under `folder`, in path order; with `arch` (an mpy-cross
architecture such as armv6m or xtensawin) each `.py` except `main.py` is compiled to `.mpy`
first, as a board runs it without the heap that compiling would need."""
import hashlib
import json
import re
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

from mpota import mpy

MAGIC = b"MOTB"
VERSION = 1
HEAD = struct.Struct(">4sBBH")
ENTRY = struct.Struct(">BI32s")
PATH_RE = re.compile(r"[A-Za-z0-9._/-]{1,96}\Z")
FILES_MAX = 255
KEEP_SOURCE = ("main.py",)  # run from source by ota.bundle_boot.run()


class BundleError(ValueError):
    """A folder that cannot be a bundle, or bytes that are not one."""


def check_path(path):
    """A bundle path as the device accepts it (docs/FORMAT.md section 6)."""
    parts = path.split("/")
    if not PATH_RE.match(path) or any(p in ("", ".", "..") for p in parts) or path.startswith(".ota/"):
        raise BundleError("bad bundle path %r: A-Z a-z 0-9 . _ - and /, up to 96 characters, "
                          "no empty, . or .. segment, nothing under .ota/" % path)
    return path


def pack(files):
    """The bundle bytes for {path: bytes}, in path order."""
    if not 1 <= len(files) <= FILES_MAX:
        raise BundleError("a bundle holds 1 to %d files (got %d)" % (FILES_MAX, len(files)))
    table = b""
    for path in sorted(files):
        name = check_path(path).encode()
        table += ENTRY.pack(len(name), len(files[path]), hashlib.sha256(files[path]).digest()) + name
    head = HEAD.pack(MAGIC, VERSION, len(files), HEAD.size + len(table))
    return head + table + b"".join(files[p] for p in sorted(files))


def read_table(data):
    """[(path, size, digest)] of a bundle; BundleError if it is not a well-formed one."""
    try:
        return _read_table(data)
    except (struct.error, UnicodeDecodeError) as exc:
        raise BundleError("not a bundle (%s)" % exc) from None


def _read_table(data):
    if len(data) < HEAD.size:
        raise BundleError("not a bundle (too short)")
    magic, version, count, h = HEAD.unpack_from(data)
    if magic != MAGIC or version != VERSION or count < 1:
        raise BundleError("not a bundle (bad header)")
    entries, offset = [], HEAD.size
    for _ in range(count):
        n, size, digest = ENTRY.unpack_from(data, offset)
        path = data[offset + ENTRY.size:offset + ENTRY.size + n].decode()
        if path in (e[0] for e in entries):
            raise BundleError("%s appears twice in the bundle" % path)
        entries.append((check_path(path), size, digest))
        offset += ENTRY.size + n
    if offset != h or h + sum(e[1] for e in entries) != len(data):
        raise BundleError("bundle lengths do not add up")
    return entries


def _compile(src, rel, arch):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.mpy"
        cmd = [mpy.mpy_cross(), "-o", str(out), "-s", rel]
        if arch != "bytecode":
            cmd.append("-march=" + arch)
        proc = subprocess.run(cmd + [str(src)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise BundleError("mpy-cross failed on %s: %s" % (rel, proc.stderr.strip()))
        return out.read_bytes()


def collect(folder, arch=None):
    """{path: bytes} of the files under `folder` (compiled to .mpy for `arch` when given)."""
    root = Path(folder)
    if not root.is_dir():
        raise BundleError("%s is not a folder" % folder)
    if arch is not None and arch not in mpy.ARCH_CODES:
        raise BundleError("unknown architecture %r (one of: %s)" % (arch, ", ".join(sorted(mpy.ARCH_CODES))))
    files = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if "__pycache__" in rel.split("/"):
            continue
        if arch and rel.endswith(".py") and rel not in KEEP_SOURCE:
            files[rel[:-3] + ".mpy"] = _compile(path, rel, arch)
        else:
            files[rel] = path.read_bytes()
    if "main.py" not in files:
        raise BundleError("%s has no main.py: the bundle's application starts there" % folder)
    return files


def build(folder, arch=None):
    return pack(collect(folder, arch))


def record_bytes(record):
    """A state file as `ota.store` writes it: JSON and its CRC-32."""
    data = json.dumps(record).encode()
    return data + struct.pack("<I", zlib.crc32(data))


def installed_files(data, *, release, version, counter, folder="a"):
    """{path: bytes} of a board's filesystem with bundle `data` installed and confirmed in
    apps/`folder`, as provisioning leaves a board: the first bundle needs no trial."""
    entries = read_table(data)
    files, offset = {}, HEAD.size + sum(ENTRY.size + len(p.encode()) for p, _, _ in entries)
    for path, size, _ in entries:
        files["apps/%s/%s" % (folder, path)] = data[offset:offset + size]
        offset += size
    files[".ota/bundle"] = record_bytes({"active": folder, "release": release, "version": version,
                                         "counter": counter, "trial": None, "outcome": None})
    return files
