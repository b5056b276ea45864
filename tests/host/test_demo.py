"""`make demo` from a fresh clone: every board ends on the good release, every board rolled back
from the bad one by itself, within two minutes, and no process is left behind."""
import os
import subprocess
import sys
from pathlib import Path

from mpunix import ROOT

VENV = Path(sys.executable).parent.parent


def demo_processes():
    """Processes still running that belong to a demo (their command line names its folder)."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmdline = Path("/proc", pid, "cmdline").read_bytes()
            except OSError:
                continue
            if b"mpota-demo-" in cmdline:
                found.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return found


def test_make_demo_in_a_fresh_clone(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    # The clone uses this venv (a fresh one costs minutes of installs): newer than the clone's files.
    (VENV / ".installed").touch()
    proc = subprocess.run(["make", "--no-print-directory", "demo", "VENV=%s" % VENV], cwd=clone, capture_output=True, text=True, timeout=120)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "good release 1.1.0 confirmed on 5/5 boards" in out
    assert "bad release 1.2.0 rolled back on 5/5 boards (reason health_check_failed)" in out
    assert out.rstrip().splitlines()[-1] == "DEMO PASSED"
    # the live table was shown (a download is now over before the table can catch it downloading)
    assert "health_check_failed" in out
    assert demo_processes() == []
