"""`mpota provision` writes the board's Wi-Fi settings: the password from $MPOTA_WIFI_PASSWORD or a
prompt, never from the command line; and the version of the firmware it flashes."""
import json
import os
import pty
import select
import signal
import stat
import struct
import subprocess
import sys
import time
import zlib

import pytest

from mpunix import ROOT
from test_provision import Inputs, provision_cli

WIFI_PASSWORD = "hunter2-but-longer"


@pytest.fixture
def inputs(tmp_path):
    return Inputs(tmp_path)


def config_of(inputs):
    return json.loads((inputs.out / "ota_config.json").read_text())


def test_wifi_settings_from_flags_and_the_environment(inputs, capsys, monkeypatch):
    monkeypatch.setenv("MPOTA_WIFI_PASSWORD", WIFI_PASSWORD)
    code, out, err = provision_cli(inputs.args("--wifi-ssid", "home net", "--wifi-hostname", "sensor-7",
                                               "--wifi-country", "DE", "--wifi-ifconfig",
                                               "192.168.1.70,255.255.255.0,192.168.1.1,192.168.1.1"), capsys)
    assert code == 0, err
    assert config_of(inputs)["wifi"] == {"ssid": "home net", "password": WIFI_PASSWORD, "hostname": "sensor-7",
                                         "country": "DE",
                                         "ifconfig": ["192.168.1.70", "255.255.255.0", "192.168.1.1", "192.168.1.1"]}
    assert stat.S_IMODE((inputs.out / "ota_config.json").stat().st_mode) == 0o600
    assert WIFI_PASSWORD not in out + err


def in_a_terminal(argv, answers, timeout=60):
    """Run `python -m mpota argv...` with a new pseudo-terminal as its controlling terminal (what
    getpass reads): each time the output so far ends with a prompt of `answers`, type its answer.
    Returns (exit code, everything the terminal showed)."""
    env = {k: v for k, v in os.environ.items() if k != "MPOTA_WIFI_PASSWORD"}
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.chdir(ROOT)
            os.execve(sys.executable, [sys.executable, "-m", "mpota"] + argv, env)
        finally:
            os._exit(127)
    shown, pending = b"", dict(answers)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for prompt in [p for p in pending if shown.endswith(p.encode())]:
                os.write(fd, pending.pop(prompt).encode() + b"\n")
            if not select.select([fd], [], [], 1)[0]:
                continue
            try:
                more = os.read(fd, 4096)
            except OSError:  # EIO: the program has exited and closed the terminal
                more = b""
            if not more:
                break
            shown += more
        else:
            os.kill(pid, signal.SIGKILL)
    finally:
        os.close(fd)
    status = os.waitpid(pid, 0)[1]
    return os.waitstatus_to_exitcode(status), shown.decode(errors="replace")


def test_the_password_is_asked_for_in_a_terminal(inputs):
    code, shown = in_a_terminal(inputs.args("--wifi-ssid", "home"), {"Wi-Fi password for home: ": WIFI_PASSWORD})
    assert code == 0, shown
    assert "Wi-Fi password for home: " in shown and WIFI_PASSWORD not in shown  # asked for, not echoed
    assert config_of(inputs)["wifi"]["password"] == WIFI_PASSWORD


def test_open_network_and_no_wifi(inputs, capsys, monkeypatch):
    monkeypatch.delenv("MPOTA_WIFI_PASSWORD", raising=False)
    assert provision_cli(inputs.args("--wifi-ssid", "cafe", "--wifi-open"), capsys)[0] == 0
    assert config_of(inputs)["wifi"]["password"] is None
    assert provision_cli(inputs.args(), capsys)[0] == 0
    assert config_of(inputs)["wifi"] is None  # the application brings its network up itself


@pytest.mark.parametrize("extra, env, says", [
    (["--wifi-ssid", "home"], None, "MPOTA_WIFI_PASSWORD"),  # no terminal, no variable
    (["--wifi-ssid", "home"], "short", "8 to 63"),
    (["--wifi-ssid", "x" * 33], WIFI_PASSWORD, "SSID"),
    (["--wifi-ssid", "home", "--wifi-country", "germany"], WIFI_PASSWORD, "country"),
    (["--wifi-ssid", "home", "--wifi-ifconfig", "192.168.1.70,24"], WIFI_PASSWORD, "IP,NETMASK,GATEWAY,DNS"),
    (["--wifi-ssid", "home", "--wifi-hostname=-bad-"], WIFI_PASSWORD, "hostname"),
    (["--wifi-country", "DE"], None, "need --wifi-ssid"),
], ids=["no-password", "short-password", "long-ssid", "country", "ifconfig", "hostname", "no-ssid"])
def test_bad_wifi_settings_are_usage_errors(inputs, extra, env, says):
    """The command as a script runs it: stdin not a terminal, one line on stderr, exit code 2."""
    environ = {k: v for k, v in os.environ.items() if k != "MPOTA_WIFI_PASSWORD"}
    if env is not None:
        environ["MPOTA_WIFI_PASSWORD"] = env
    proc = subprocess.run([sys.executable, "-m", "mpota"] + inputs.args(*extra), cwd=ROOT, env=environ,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and says in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (inputs.out / "ota_config.json").exists()


def test_no_password_flag_exists(inputs, capsys):
    """A password typed as an argument would stay in the shell's history."""
    with pytest.raises(SystemExit) as exit_:
        provision_cli(inputs.args("--wifi-ssid", "home", "--wifi-password", WIFI_PASSWORD), capsys)
    assert exit_.value.code == 2


def test_firmware_version_is_recorded_for_the_board(inputs, capsys):
    assert provision_cli(inputs.args("--firmware-version", "1.26.1"), capsys)[0] == 0
    blob = (inputs.out / ".ota/installed").read_bytes()
    assert struct.unpack("<I", blob[-4:])[0] == zlib.crc32(blob[:-4])
    assert json.loads(blob[:-4]) == {"ota_0": [None, None, "1.26.1"]}
