"""Every command in README.md is one a test runs. The `sh` blocks run here, in order, as a maker
would type them, against a real TLS broker (standing in for mqtt.example.com:8883), with a
synthetic firmware standing in for micropython.app-bin. Commands in other blocks are run by the
tests named in COVERED."""
import os
import re
import subprocess
import sys
from pathlib import Path

from mpunix import ROOT
from tools import fwimage
from tools.pki import PKI

README = (ROOT / "README.md").read_text()
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)
# Commands shown in console blocks, and the test that runs each.
COVERED = {
    "make demo": "tests/host/test_demo.py",
    "make test": ".ci/run (CI runs exactly this)",
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


def test_readme_sh_blocks_run_as_written(mosquitto, tmp_path):
    broker = mosquitto(tls=True)
    work = tmp_path / "maker"
    work.mkdir()
    (work / "ca.pem").write_bytes(broker.pki.ca_file.read_bytes())
    device = PKI(tmp_path / "fleet-ca").issue("sensor-01")  # a client certificate as a fleet CA issues it
    (work / "sensor-01.crt").write_bytes(device["cert_pem"])
    (work / "sensor-01.key").write_bytes(device["key_pem"])
    (work / "ESP32_GENERIC-OTA.bin").write_bytes(fwimage.build_image("1.24.0", {}))
    (work / "micropython.app-bin").write_bytes(fwimage.build_image("1.2.0", {}, size=64 * 1024))
    lines = [c for body in blocks("sh") for c in commands(body)]
    assert len(lines) >= 9
    script = "set -euo pipefail\n" + "\n".join(lines).replace("mqtt.example.com:8883", "127.0.0.1:%d" % broker.port)
    env = dict(os.environ, MPOTA_KEY_PASSWORD="correct horse battery staple",
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    proc = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "esptool --chip esp32 --port /dev/ttyUSB0 --baud 460800 write-flash -z 0x1000" in out
    assert "mpremote connect /dev/ttyUSB0 fs cp -r" in out
    assert (work / "staging/sensor-01/lib/ota/updater.mpy").exists()
    # The release reached the broker: its manifest and chunks are retained there.
    from tools import broker as host_broker
    from tools import signing

    rid = signing.manifest_id((work / "release.sig").read_bytes())
    with host_broker.Connection(broker.host, broker.port, cafile=str(broker.pki.ca_file)) as conn:
        retained = conn.retained(["ota/manifest/home", "ota/fw/%s/#" % rid], settle=0.5)
    assert signing.manifest_id(retained["ota/manifest/home"]) == rid  # same release, signed twice
    assert len([t for t in retained if t.startswith("ota/fw/%s/" % rid)]) == 16 + 2 + 1  # chunks, digest table, manifest
    # The offline signature (openssl) attached as the last step verifies too.
    assert subprocess.run(["mpota", "verify", "release.sig", "--pub", "release-key.pub.pem"], cwd=work, env=env,
                          capture_output=True).returncode == 0
