"""Heap a whole device needs: the smallest `-X heapsize` in which a simulated board runs the
project's boot.py and main.py through a full update over MQTT with TLS (connect, download,
verify, install, trial, confirm) and a failed one (rollback), found by bisection on the demo's
story with one board. Also the heap the simulator's own modules take (on a board `esp32` and
`machine` are built into the firmware and take none), so the application's share can be read.

Figures are for the 64-bit unix port, where objects are larger than on a 32-bit ESP32, and TLS
(mbedtls) allocates from the same heap, which it does not on an ESP32."""
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools import demo  # noqa: E402

LOW, HIGH, STEP = 128, 256, 8  # KiB


def story_passes(heap_kib):
    with tempfile.TemporaryDirectory(prefix="mpota-demo-bench-") as work:
        d = demo.Demo(work, 1, out=lambda line: None, heapsize="%dK" % heap_kib)
        try:
            return d.run()
        finally:
            d.stop()


def simulator_modules_heap():
    code = ("import gc; gc.collect(); a = gc.mem_alloc(); import esp32, machine; "
            "p = esp32.Partition(esp32.Partition.RUNNING); gc.collect(); print(gc.mem_alloc() - a)")
    with tempfile.TemporaryDirectory() as work:
        flash = Path(work) / "flash.bin"
        flash.write_bytes(b"\xff" * 0x400000)
        env = dict(os.environ, MICROPYPATH=str(ROOT / "boards" / "unix" / "modules"), OTASIM_FLASH=str(flash),
                   OTASIM_PARTITIONS=str(ROOT / "boards" / "esp32" / "partitions-4MiB-ota.csv"), OTASIM_RUNNING="ota_0")
        out = subprocess.run([str(Path(sys.executable).parent / "micropython"), "-c", code], env=env,
                             capture_output=True, text=True, check=True)
    return int(out.stdout)


def main():
    start = time.monotonic()
    low, high = LOW, HIGH
    if not story_passes(high):
        print("the story fails even with %d KiB of heap" % high)
        return 1
    while high - low > STEP:
        mid = (low + high) // 2 // STEP * STEP
        if story_passes(mid):
            high = mid
        else:
            low = mid
    sim = simulator_modules_heap()
    print("smallest heap for a full update and a rollback over MQTT+TLS: %d KiB (64-bit unix port)" % high)
    print("simulator's own modules (esp32, machine, flash model): %.1f KiB" % (sim / 1024))
    print("application's share (ota package, MQTT, TLS state, buffers): about %d KiB" % (high - sim // 1024))
    print("bisection took %.0f s" % (time.monotonic() - start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
