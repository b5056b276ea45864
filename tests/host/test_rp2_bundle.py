"""App bundles on a simulated Pico W: a good bundle is installed and confirmed; a bundle that
hangs, raises at import, fails its check, never confirms or carries a broken copy of the OTA
agent is rolled back by the next boot to the bundle that ran before, and never tried again.
No network: the test application feeds a staged release to the updater (tests/host/apps)."""
import hashlib

import pytest

from pipeline_env import FW_HANGS, FW_HEALTHY, FW_NEVER_CONFIRMS, FW_UNHEALTHY
from rp2_env import BundleSigner, bundle_board_files, bundle_record, events, history, rp2_device, stage, staged  # noqa: F401
from mpota import bundle, signing


@pytest.fixture
def signer(tmp_path):
    return BundleSigner(tmp_path / "keys")


def _board(rp2_device, signer, **options):
    device = rp2_device(bundle_board_files(signer, signer.bundle("1.0.0", FW_HEALTHY, counter=1), **options))
    device.install_lib()
    return device


def _files_of(data):
    entries = bundle.read_table(data)
    offset = len(data) - sum(size for _, size, _ in entries)
    out = {}
    for path, size, digest in entries:
        out[path] = data[offset:offset + size]
        assert hashlib.sha256(out[path]).digest() == digest
        offset += size
    return out


def test_good_bundle_installed_and_confirmed(rp2_device, signer):
    device = _board(rp2_device, signer)
    before = device.read_files()
    blob, data = signer.bundle("2.0.0", FW_HEALTHY, counter=2, extra={"lib/helper.py": "X = 1\n", "data/big.bin": bytes(range(256)) * 40})
    stage(device, blob, data)
    console = device.run(timeout=60)
    kinds = [k for k, _ in events(console)]
    assert kinds.index("verified") < kinds.index("rebooting") < kinds.index("trial") < kinds.index("confirmed"), console
    assert [b["cause"] for b in device.boot_log()][:2] == ["PWRON_RESET", "WDT_RESET"]  # machine.reset() is a WDT_RESET on rp2
    record = bundle_record(device)
    assert record["active"] == "b" and record["trial"] is None
    assert (record["release"], record["version"], record["counter"]) == (signing.manifest_id(blob), "2.0.0", 2)
    files = device.read_files()
    for path, content in _files_of(data).items():
        assert files["apps/b/" + path] == content
    assert {k: v for k, v in files.items() if k.startswith("apps/a/")} == \
        {k: v for k, v in before.items() if k.startswith("apps/a/")}  # the fallback is untouched
    assert not any(k.startswith(".ota/bundle.part") for k in files) and ".ota/progress" not in files  # the download is forgotten
    assert "Traceback" not in console


BAD = {
    "hang": (FW_HANGS, None, "reset"),  # rp2 cannot tell the watchdog from machine.reset()
    "exception_at_import": ("raise RuntimeError('bug at import')\n", None, "reset"),
    "failed_check": (FW_UNHEALTHY, None, "health_check_failed"),
    "never_confirms": (FW_NEVER_CONFIRMS, None, "confirm_timeout"),
    "broken_agent_inside": (FW_HEALTHY, {"ota/__init__.py": "this is not the agent\n"}, "reset"),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_bundle_rolls_back(rp2_device, signer, kind):
    behaviour, extra, reason = BAD[kind]
    device = _board(rp2_device, signer, confirm_within_ms=2000)
    first = bundle_record(device)
    blob, data = signer.bundle("2.0.0", behaviour, counter=2, extra=extra)
    stage(device, blob, data)
    console = device.run(timeout=60)
    got = events(console)
    rolled = [f for k, f in got if k == "rolled_back"]
    assert rolled and rolled[0]["release"] == signing.manifest_id(blob) and rolled[0]["reason"] == reason, console
    assert rolled[0]["version"] == "1.0.0"
    after = [k for k, _ in got[[k for k, _ in got].index("rolled_back"):]]
    assert "offered" not in after  # the staged release is not tried again
    record = bundle_record(device)
    assert (record["active"], record["release"], record["counter"], record["trial"]) == \
        ("a", first["release"], 1, None)
    files = device.read_files()
    assert signing.manifest_id(blob) in history(files)["failed"]
    assert not any(k.startswith(".ota/bundle.part") for k in files)
    assert console.rstrip().endswith("halt reason=idle boots=%d" % len(device.boot_log()))
    assert 'IDLE {' in console.split("[sim] boot %d " % len(device.boot_log()))[-1]  # the old bundle runs again


def test_bundle_for_another_board_or_older_is_refused_before_anything_is_written(rp2_device, signer):
    device = _board(rp2_device, signer)
    blob, data = signer.bundle("2.0.0", FW_HEALTHY, counter=2, board="esp32-generic")
    stage(device, blob, data)
    console = device.run(timeout=60)
    assert "REFUSED wrong_board" in console
    old_blob, old_data = signer.bundle("0.9.0", FW_HEALTHY, counter=0)
    stage(device, old_blob, old_data)
    console = device.run(timeout=60)
    assert "REFUSED downgrade" in console
    files = device.read_files()
    assert not any(k.startswith("apps/b/") for k in files) and not any(k.startswith(".ota/bundle.part") for k in files)
    assert bundle_record(device)["active"] == "a"


MALFORMED = {
    "climbs_out": lambda: bundle.pack({"main.py": b"print('x')\n", "xx/boot.py": b"import machine\n"}).replace(
        b"xx/boot.py", b"../boot.py"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED) + ["duplicate_path"])
def test_malformed_bundle_is_refused_and_not_activated(rp2_device, signer, case):
    """Authentic (signed) but malformed: a path that climbs out of the bundle folder, or one
    path twice (the second copy would silently replace the first)."""
    import hashlib
    import struct

    if case == "duplicate_path":
        files = [(b"main.py", b"print('x')\n"), (b"main.py", b"print('y')\n")]
        table = b"".join(struct.pack(">BI32s", len(p), len(c), hashlib.sha256(c).digest()) + p for p, c in files)
        data = struct.pack(">4sBBH", b"MOTB", 1, 2, 8 + len(table)) + table + b"".join(c for _, c in files)
    else:
        data = MALFORMED[case]()
    device = _board(rp2_device, signer)
    blob = signer.release_of(data, board="rp2-pico-w", version="6.6.6", counter=3, chunk_size=256, target="bundle")[0]
    stage(device, blob, data)
    console = device.run(timeout=60)
    assert "REFUSED bad_format" in console
    files = device.read_files()
    assert bundle_record(device)["active"] == "a" and files["boot.py"].startswith(b"# boot.py")
    assert signing.manifest_id(blob) in history(files)["failed"]


def test_watchdog_fed_through_the_longest_bundle_operations(rp2_device, signer):
    """A big bundle downloaded, verified, unpacked and activated while the trial watchdog of the
    bundle before it runs (the rp2 watchdog cannot be stopped): the simulator's watchdog record,
    which charges the data sheet's worst flash times and the VM's scaled CPU time to each
    interval between two feeds, never sees an interval past the timeout. The configured 30 s
    (the default) is clamped to the RP2040's 8388 ms."""
    import os

    device = _board(rp2_device, signer, wdt_ms=30000, confirm_within_ms=60000,
                    app={"releases": ["release", "next"]})
    small_blob, small = signer.bundle("2.0.0", FW_HEALTHY, counter=2)
    modules = {"lib/m%02d.py" % i: "VALUE = %d\n" % i * 50 for i in range(30)}
    modules["data/blob.bin"] = os.urandom(100 * 1024)
    big_blob, big = signer.bundle("3.0.0", FW_HEALTHY, counter=3, chunk_size=4096, extra=modules)
    device.write_files(dict(staged("release", small_blob, small), **staged("next", big_blob, big)))
    console = device.run(timeout=120)
    record = device.wdt_record()
    assert bundle_record(device)["version"] == "3.0.0", console
    assert record["arms"] >= 2 and record["feeds"] > len(big) // 4096  # armed through the big install
    assert record["fired"] == 0 and record["gaps_over"] == 0, (record, console[-2000:])
    assert 0 < record["max_gap_ms"] < 8388, record
