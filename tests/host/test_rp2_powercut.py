"""Power cuts during an app-bundle update on a simulated Pico W: the power goes off during a
random flash operation (a page program or a sector erase, left torn) anywhere from the download
to the confirmation, and comes back at once. Every board must run a working application at
every boot and finish the update by itself.

The cut is placed by counting flash operations (the simulator's `--cut-at`), so no network and
no timing is involved: `make test` runs 200 cuts, `OTA_SOAK=1` 1000."""
import hashlib
import json
import os
import random
import re
import shutil
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from pipeline_env import FW_HEALTHY
from rp2_env import BundleSigner, Rp2Device, bundle_board_files, events, stage
from mpota import bundle, signing

SOAK = os.environ.get("OTA_SOAK") == "1"
RUNS = int(os.environ.get("OTA_CUTS", 1000 if SOAK else 200))
WORKERS = 2
OPS = re.compile(r"^\[sim\] flash operations: (\d+)$", re.M)


def _phase(before_cut):
    """The last step the device reported before the power went."""
    kinds = [k for k, _ in events(before_cut)]
    boots = before_cut.count("[sim] boot ")
    return "boot %d: %s" % (boots, kinds[-1] if kinds else "start")


def test_power_cuts_during_a_bundle_update(tmp_path, capsys):
    signer = BundleSigner(tmp_path / "keys")
    first = signer.bundle("1.0.0", FW_HEALTHY, counter=1)
    blob, data = signer.bundle("2.0.0", FW_HEALTHY, counter=2, chunk_size=512,
                               extra={"lib/util.py": "def f():\n    return 2\n" * 40, "data/table.bin": os.urandom(6000)})
    release = signing.manifest_id(blob)
    wanted = {"apps/b/" + path: digest for path, _, digest in bundle.read_table(data)}

    pristine = Rp2Device(tmp_path / "pristine", bundle_board_files(signer, first, wdt_ms=4000))  # board time: flash ops and CPU x50
    pristine.install_lib()
    stage(pristine, blob, data)
    image = pristine.flash.read_bytes()

    calibration = Rp2Device(tmp_path / "calibration")
    calibration.flash.write_bytes(image)
    calibration.cut_at, calibration.stop_at_idle = 10 ** 9, True
    calibration.run(timeout=60)
    total = int(OPS.findall(calibration.console)[-1])
    assert "confirmed" in [k for k, _ in events(calibration.console)], calibration.console

    rng = random.Random(2026)
    cuts = [rng.randint(1, total) for _ in range(RUNS)]

    def one(n):
        device = Rp2Device(tmp_path / ("board%d" % n))
        device.flash.write_bytes(image)
        device.cut_at, device.stop_at_idle = cuts[n], True
        try:
            console = device.run(timeout=120)
            before, _, after = console.partition("[sim] power cut")
            assert after, console  # the cut happened
            assert "Traceback" not in console, console
            for boot in after.split("[sim] boot ")[1:]:  # every boot after the cut runs an application
                assert "EVENT booted" in boot or "EVENT trial" in boot, console
            files = device.read_files()
            record = json.loads(files[".ota/bundle"][:-4])
            assert (record["active"], record["release"], record["trial"]) == ("b", release, None), console
            for path, digest in wanted.items():
                assert hashlib.sha256(files[path]).digest() == digest, path
            rolled = [f["reason"] for k, f in events(after) if k == "rolled_back"]
            return _phase(before), rolled
        finally:
            shutil.rmtree(device.root, ignore_errors=True)

    with ThreadPoolExecutor(WORKERS) as pool:
        results = list(pool.map(one, range(RUNS)))

    phases = Counter(phase for phase, _ in results)
    rollbacks = Counter(reason for _, rolled in results for reason in rolled)
    with capsys.disabled():
        print("\nbundle power cuts: %d over %d flash operations of one update (bundle %d bytes)" % (RUNS, total, len(data)))
        print("  cut after: " + ", ".join("%s %d" % kv for kv in sorted(phases.items())))
        print("  trials rolled back by a cut, then installed again: %s" % (dict(rollbacks) or 0))
    assert len(results) == RUNS
    assert set(rollbacks) <= {"power_loss"}  # a cut is never blamed on the bundle
    assert any(p.startswith("boot 1: downloading") for p in phases) and any(p.startswith("boot 2") for p in phases)
