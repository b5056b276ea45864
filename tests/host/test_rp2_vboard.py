"""The simulated Pico W behind a pty (`mpota sim rp2-board`, boards/unix/rp2host/vboard.py),
through the real mpremote CLI: files land on its LittleFS, resets behave as the rp2 port's, and
the device test suite (tests/device) runs on it with `--board rp2`."""
import subprocess
import sys

import pytest

from mpunix import ROOT
from tests.device.virtualboard import VirtualPicoProcess, mpremote


@pytest.fixture
def pico(tmp_path):
    board = VirtualPicoProcess(tmp_path / "pico", files={"boot.py": "print('pico boot')\n"})
    board.start()
    yield board
    board.stop()


def test_mpremote_files_resets_and_watchdog_on_a_virtual_pico(pico, tmp_path):
    port = pico.port
    (tmp_path / "hello.py").write_text("GREETING = 'hi from flash'\n")
    mpremote(port, "fs", "cp", tmp_path / "hello.py", ":hello.py")
    out = mpremote(port, "exec", "import hello, sys, machine; print(hello.GREETING, sys.path, machine.reset_cause())").stdout
    assert "hi from flash ['', '.frozen', '/lib'] 1" in out  # PWRON_RESET; the port's sys.path
    mpremote(port, "reset")  # machine.reset(): through the watchdog, as on the rp2 port
    pico.wait_boots(2)
    assert mpremote(port, "exec", "import machine; print(machine.reset_cause())").stdout.strip() == "3"
    # an armed watchdog keeps running at the idle REPL and cannot be stopped: the board resets
    mpremote(port, "exec", "import machine; machine.WDT(timeout=300)")
    pico.wait_boots(3)
    assert [b["cause"] for b in pico.boot_log()] == ["PWRON_RESET", "WDT_RESET", "WDT_RESET"]
    assert mpremote(port, "exec", "import os; print(sorted(os.listdir()))").stdout.strip() == "['boot.py', 'hello.py']"


def test_device_tests_run_on_the_virtual_pico():
    """tests/device with --virtual --board rp2: what applies to a board without firmware slots
    passes, the ESP32 slot tests are skipped with their reason."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests/device",
                           "--virtual", "--board", "rp2", "--allow-reboot"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed, 2 skipped" in proc.stdout, proc.stdout
    assert proc.stdout.count("ESP32 firmware slots") == 2, proc.stdout
