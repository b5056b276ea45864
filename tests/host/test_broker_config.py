"""The mosquitto configuration `mpota fleet broker-config` writes starts as written: paths that
do not depend on the folder it is started from, no warnings, and under Debian's mosquitto both
started as root (it drops to the `mosquitto` user) and started as that user."""
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from mpota import mosquitto_conf
from mpota.cli import main
from mpota.fleet import Fleet
from mpota.localbroker import free_port, mosquitto_binary

if os.geteuid() != 0 or mosquitto_conf.broker_account() is None:
    pytest.fail("these tests start mosquitto as root and as the mosquitto user: run them as root with "
                "Debian's mosquitto installed (make setup)", pytrace=False)


@pytest.fixture
def public_dir():
    """A folder the mosquitto user can reach (pytest's tmp_path sits under a 0700 folder)."""
    path = Path(tempfile.mkdtemp(prefix="mpota-broker-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def generate(folder, port):
    """A fleet and its broker configuration, written as a user would: `--out` relative."""
    fleet = Fleet.init(folder / "fleet", "home")
    fleet.add("sensor-01", "north")
    fleet.add("sensor-02")
    argv = ["fleet", "broker-config", "--out", "broker", "--port", str(port), "--bind", "127.0.0.1",
            "--fleet-dir", str(folder / "fleet")]
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        assert main(argv) == 0
    finally:
        os.chdir(cwd)
    return fleet, folder / "broker" / "mosquitto.conf"


def run_until_running(command, log):
    """Start mosquitto; its own log (stderr) until it says running, or it exits."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd="/")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None and " running" not in log.read_text():
        time.sleep(0.05)
    return proc


def start_and_publish(fleet, conf, command, log):
    proc = run_until_running(command, log)
    try:
        text = log.read_text()
        assert proc.poll() is None and " running" in text, text
        assert "Warning" not in text and "Error" not in text, text
        port = int(next(line.split()[1] for line in conf.read_text().splitlines() if line.startswith("listener")))
        with fleet.connection("127.0.0.1:%d" % port) as conn:
            conn.wait([conn.publish("ota/manifest/home", b"release")])
            assert conn.retained(["ota/manifest/home"]) == {"ota/manifest/home": b"release"}
    finally:
        proc.terminate()
        proc.wait(10)
    assert "Saving in-memory database" in log.read_text()
    assert (conf.parent / "db" / "mosquitto.db").exists()  # retained releases survive a restart


def test_paths_are_absolute_for_a_relative_out(public_dir):
    _, conf = generate(public_dir, free_port())
    for line in conf.read_text().splitlines():
        key, _, value = line.partition(" ")
        if key in ("cafile", "certfile", "keyfile", "crlfile", "acl_file", "persistence_location"):
            assert Path(value).is_absolute() and Path(value.rstrip("/")).exists(), line


def test_starts_as_root_and_drops_to_the_mosquitto_user(public_dir):
    fleet, conf = generate(public_dir, free_port())
    assert "\nuser " not in conf.read_text()  # the packaged default: root drops to `mosquitto`
    start_and_publish(fleet, conf, [mosquitto_binary(), "-c", str(conf)], public_dir / "root.log")


def test_starts_as_the_mosquitto_user(public_dir):
    fleet, conf = generate(public_dir, free_port())
    command = ["setpriv", "--reuid", mosquitto_conf.BROKER_USER, "--regid", mosquitto_conf.BROKER_USER,
               "--clear-groups", mosquitto_binary(), "-c", str(conf)]
    start_and_publish(fleet, conf, command, public_dir / "user.log")


def test_says_when_the_broker_user_cannot_reach_the_folder(tmp_path, capsys):
    tmp_path.parent.chmod(0o700)  # as pytest makes it: the mosquitto user cannot pass
    fleet = Fleet.init(tmp_path / "fleet", "home")
    assert main(["fleet", "broker-config", "--out", str(tmp_path / "b"), "--fleet-dir", str(fleet.dir)]) == 0
    err = capsys.readouterr().err
    assert err.startswith("note: ") and "cannot enter" in err and err.count("\n") == 1, err
