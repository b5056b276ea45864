"""Every command in README.md is one a test runs. The `sh` blocks run here, in order, as a maker
would type them, against the broker they configure (standing in for mqtt.example.com:8883), with
synthetic firmware standing in for ESP32_GENERIC-OTA.bin and micropython.app-bin. Commands in other blocks are run by the
tests named in COVERED."""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import flashimage
from mpunix import ROOT
from mpota import fwimage, signing
from mpota.fleet import Fleet
from mpota.localbroker import free_port

README = (ROOT / "README.md").read_text()
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)
# Commands shown in console blocks, and the test that runs each.
COVERED = {
    "make demo": "tests/host/test_demo.py",
    "make test": ".ci/run (CI runs exactly this)",
    "make -C ports/esp32 BOARD=ESP32_GENERIC BOARD_VARIANT=OTA FROZEN_MANIFEST=/path/to/micropython-ota/manifest.py":
        "tests/host/test_freeze_manifest.py (the manifest; the build itself needs ESP-IDF) and "
        "tests/host/test_agent_survives.py (a release with ota frozen in)",
}


def blocks(lang):
    return [body for kind, body in BLOCK.findall(README) if kind == lang]


def commands(body):
    """Shell commands of a block: continuation lines joined, comments dropped."""
    text = body.replace("\\\n", " ")
    return [line.split("  #")[0].strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_console_commands_are_each_covered_by_a_test():
    shown = [c for body in blocks("console") for c in commands(body)]
    assert shown and all(c in COVERED for c in shown), shown
    for where in COVERED.values():
        assert (ROOT / where.split()[0]).exists(), where


def run_script(lines, work, env):
    proc = subprocess.run(["bash", "-c", "set -euo pipefail\n" + "\n".join(lines)], cwd=work, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_readme_sh_blocks_run_as_written(work_dir):
    """The broker is the one the README has the maker configure: `mpota fleet broker-config`,
    started with the README's own `mosquitto -c ...` line (as root it drops to user mosquitto),
    client certificates required. Only the address changes: mqtt.example.com:8883 is 127.0.0.1
    on a free port."""
    work = work_dir
    (work / "ESP32_GENERIC-OTA.bin").write_bytes(flashimage.full_image())
    (work / "micropython.app-bin").write_bytes(fwimage.build_image("1.2.0", {}, size=64 * 1024))
    (work / "myapp").mkdir()  # the maker's application, for the app-bundle steps
    (work / "myapp" / "main.py").write_text((ROOT / "boards" / "rp2" / "app" / "main.py").read_text())
    (work / "myapp" / "sensor.py").write_text("def read():\n    return 21.5\n")
    port = free_port()
    lines = [c.replace("mqtt.example.com:8883", "127.0.0.1:%d" % port) for body in blocks("sh") for c in commands(body)]
    assert len(lines) >= 13
    starts = [i for i, line in enumerate(lines) if line.startswith("mosquitto ")]
    assert len(starts) == 1, lines
    env = dict(os.environ, MPOTA_KEY_PASSWORD="correct horse battery staple", MPOTA_WIFI_PASSWORD="wifi passphrase",
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    out = run_script(lines[:starts[0]], work, env)
    log = work / "mosquitto.log"
    with open(log, "wb") as f:
        broker = subprocess.Popen(shlex.split(lines[starts[0]]), cwd=work, stdout=f, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while " running" not in log.read_text() and broker.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert broker.poll() is None and "Warning" not in log.read_text(), log.read_text()
        assert "require_certificate true" in (work / "broker/mosquitto.conf").read_text()
        out += run_script(lines[starts[0] + 1:], work, env)
        assert "esptool --chip esp32 --port /dev/ttyUSB0 --baud 460800 write-flash -z 0x1000" in out
        assert "mpremote connect /dev/ttyUSB0 fs cp -r" in out
        assert (work / "staging/sensor-01/lib/ota/updater.mpy").exists()
        config = json.loads((work / "staging/sensor-01/ota_config.json").read_text())
        assert config["wifi"]["ssid"] == "home" and config["wifi"]["password"] == "wifi passphrase"
        assert (work / "staging/pico-01/apps/a/sensor.mpy").exists()  # the first bundle, for armv6m
        assert "mpremote connect /dev/ttyACM0 fs cp -r" in out
        # The release reached the broker: its manifest and chunks are retained there.
        rid = signing.manifest_id((work / "release.sig").read_bytes())
        with Fleet(work / "fleet").connection("127.0.0.1:%d" % port) as conn:
            retained = conn.retained(["ota/manifest/home", "ota/fw/%s/#" % rid], settle=0.5)
        assert signing.manifest_id(retained["ota/manifest/home"]) == rid  # same release, signed twice
        assert len([t for t in retained if t.startswith("ota/fw/%s/" % rid)]) == 16 + 2 + 1  # chunks, digest table, manifest
    finally:
        broker.terminate()
        broker.wait(10)
    # The offline signature (openssl) attached as the last step verifies too.
    assert subprocess.run(["mpota", "verify", "release.sig", "--pub", "release-key.pub.pem"], cwd=work, env=env,
                          capture_output=True).returncode == 0


@pytest.fixture
def work_dir():
    """A folder the mosquitto user can enter: started as root, mosquitto drops to that user
    before it reads its key (pytest's tmp_path sits under a 0700 folder)."""
    path = Path(tempfile.mkdtemp(prefix="mpota-readme-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)
