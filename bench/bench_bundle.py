"""An app-bundle update on the simulated Pico W: its time and the smallest heap it runs in, with
the library as .mpy, against a plain copy of the same files (what an unsigned file updater does:
no chunks, no digests, no signature, no A/B, no trial).

Run: .venv/bin/python bench/bench_bundle.py [--size KB] [--rounds N]

It measures, on one host: (1) the wall time of a simulated board's run that takes a signed
bundle from a staged release (manifest, digest table, chunks in random order), verifies it,
unpacks it, activates it, reboots and confirms the trial, against the wall time of a run whose
main.py copies the same files into a folder; the median of N rounds each; (2) the `-X heapsize`
values (a grid, 8 KiB steps) at which the bundle update completes with no watchdog expiry; (3) the flash work
of the update from the simulator's counters (page programs and sector erases) and the longest
interval between two watchdog feeds in board time."""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "host")]

from pipeline_env import FW_HEALTHY  # noqa: E402
from rp2_env import BundleSigner, Rp2Device, bundle_board_files, bundle_record, stage  # noqa: E402
from mpota import bundle  # noqa: E402

COPY_APP = """import os, time
t = time.ticks_ms()
def mk(p):
    i = p.find("/")
    while i > 0:
        try:
            os.mkdir(p[:i])
        except OSError:
            pass
        i = p.find("/", i + 1)
for name in open("plain/list.txt").read().split():
    mk("apps/b/" + name)
    with open("plain/" + name, "rb") as a, open("apps/b/" + name, "wb") as b:
        while True:
            d = a.read(1024)
            if not d:
                break
            b.write(d)
print("COPIED", time.ticks_diff(time.ticks_ms(), t))
"""


def _files(size_kb):
    files = {"lib/m%02d.py" % i: ("VALUE = %d\n" % i) * 40 for i in range(20)}
    files["data/table.bin"] = os.urandom(size_kb * 1024)
    return files


def _board(tmp, signer, heapsize, arch=None):
    first = signer.bundle("1.0.0", FW_HEALTHY, counter=1, chunk_size=4096)
    device = Rp2Device(Path(tempfile.mkdtemp(dir=tmp)), bundle_board_files(signer, first, wdt_ms=8000), heapsize)
    device.install_lib(arch)
    device.stop_at_idle = True
    return device


def bundle_run(tmp, signer, release, heapsize="256K"):
    device = _board(tmp, signer, heapsize)
    stage(device, *release)
    device.cut_at = 10 ** 9  # counts the flash operations, cuts nothing
    start = time.monotonic()
    console = device.run(timeout=300)
    elapsed = time.monotonic() - start
    record = device.wdt_record()
    # Complete means: confirmed, and no watchdog expiry on the way (a heap so tight that the
    # garbage collector runs on every allocation stalls the board past its watchdog).
    ok = bundle_record(device)["version"] == "2.0.0" and record["fired"] == 0
    ops = int(console.rsplit("[sim] flash operations: ", 1)[1].split()[0]) if ok else 0
    return ok, elapsed, ops, record


def copy_run(tmp, signer, files):
    device = _board(tmp, signer, "256K")
    staged = {"plain/" + k: v.encode() if isinstance(v, str) else v for k, v in files.items()}
    staged["plain/list.txt"] = "\n".join(files).encode()
    staged["apps/a/main.py"] = COPY_APP.encode()
    device.write_files(staged)
    start = time.monotonic()
    console = device.run(timeout=300)
    assert "COPIED" in console, console
    return time.monotonic() - start


def heap_grid(tmp, signer, release, sizes=range(128, 264, 8)):
    """{KiB: completed?} over a grid: not a bisection, since the outcome is not monotonic (the
    unix port can crash at one heap size and not at the next, see bench/README.md)."""
    return {k: bundle_run(tmp, signer, release, "%dK" % k)[0] for k in sizes}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=64, help="KiB of data in the bundle besides 20 modules (default 64)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        signer = BundleSigner(Path(tmp) / "keys")
        files = _files(args.size)
        release = signer.bundle("2.0.0", FW_HEALTHY, counter=2, chunk_size=4096, extra=files)
        size = len(release[1])
        plain = {k: v for k, v in files.items()}
        plain.update({p: d for p, d in _split(release[1]).items() if p not in plain})
        runs = [bundle_run(tmp, signer, release) for _ in range(args.rounds)]
        assert all(r[0] for r in runs), "a bundle update failed"
        copies = [copy_run(tmp, signer, plain) for _ in range(args.rounds)]
        grid = heap_grid(tmp, signer, release)
    t_bundle = statistics.median(r[1] for r in runs)
    t_copy = statistics.median(copies)
    print("app-bundle update on the simulated Pico W (lib/ota as .mpy), bundle of %d bytes in %d files, 4 KiB chunks"
          % (size, len(bundle.read_table(release[1]))))
    print("  whole update, two boots (download, verify, unpack, activate, reboot, trial, confirm): median %.2f s" % t_bundle)
    print("  plain copy of the same files by main.py, one boot (no signature, digests, A/B or trial): median %.2f s"
          % t_copy)
    print("  ratio bundle / plain copy: %.2f" % (t_bundle / t_copy))
    print("  flash operations of the update (page programs + sector erases): %d" % runs[0][2])
    print("  longest interval between two watchdog feeds, board time (data-sheet flash + scaled CPU): %.0f ms of 8388"
          % max(r[3]["max_gap_ms"] for r in runs))
    done = sorted(k for k, ok in grid.items() if ok)
    failed = sorted(k for k, ok in grid.items() if not ok)
    steady = min(k for k in grid if all(grid[j] for j in grid if j >= k))
    print("  heap (KiB, 64-bit unix port, the simulator's own modules included): smallest that completed %s; "
          "every size from %d up completed; failed at %s" % (done[0] if done else "-", steady, failed or "none"))


def _split(data):
    entries = bundle.read_table(data)
    offset = len(data) - sum(s for _, s, _ in entries)
    out = {}
    for path, size, _ in entries:
        out[path] = data[offset:offset + size]
        offset += size
    return out


if __name__ == "__main__":
    main()
