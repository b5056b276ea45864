"""fwimage builds real ESP32 app images: esptool agrees, and the simulator's CLI drives them."""
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from mpunix import ROOT

ESPTOOL = Path(sys.executable).parent / "esptool"


def image_info(path):
    assert ESPTOOL.exists(), "esptool is missing: run `make setup`"
    proc = subprocess.run([str(ESPTOOL), "image-info", str(path)], capture_output=True, text=True)
    return proc.stdout + proc.stderr


def mpota(*args):
    return subprocess.run([sys.executable, "-m", "mpota", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("size", [None, 64 * 1024, 0x180000])
def test_esptool_says_built_images_are_valid(tmp_path, firmware, size):
    path = tmp_path / "fw.bin"
    path.write_bytes(firmware("a", {"_boot": "print('hi')\n", "pkg.__init__": ""}, size=size, secure_version=3,
                              app_version="1.4.2", project_name="micropython"))
    out = image_info(path)
    assert "Detected image type: ESP32" in out
    assert "Checksum:" in out and "(valid)" in out.split("Checksum:")[1].splitlines()[0]
    assert "(valid)" in out.split("Validation hash:")[1].splitlines()[0]
    assert "App version: 1.4.2" in out and "Project name: micropython" in out and "Secure version: 3" in out
    if size:
        assert path.stat().st_size == size


@pytest.mark.parametrize("offset", [-33, -1, 100], ids=["checksum", "hash", "segment-data"])
def test_esptool_flags_corrupted_images(tmp_path, firmware, offset):
    image = bytearray(firmware("1.0.0", {"m": "x = 1\n"}))
    image[offset] ^= 0x40
    path = tmp_path / "bad.bin"
    path.write_bytes(image)
    out = image_info(path)
    assert "(invalid" in out


def test_app_descriptor_and_modules_round_trip(firmware):
    modules = {"_boot": "import machine\n", "ota.core": "VERSION = 2\n"}
    image = firmware("2.0.0-rc1", modules, size=8192, secure_version=7, app_version="2.0.0")
    partition = image + b"\xff" * 4096  # what readblocks over the whole slot returns
    assert firmware.label_of(partition) == "2.0.0-rc1" and firmware.version_of(partition) == "2.0.0"
    assert firmware.modules_of(partition) == modules
    assert struct.unpack_from("<II", image, 32) == (0xABCD5432, 7)
    assert firmware("2.0.0", size=8192) == firmware("2.0.0", size=8192)  # deterministic filler
    with pytest.raises(ValueError):
        firmware.version_of(b"\xff" * 4096)
    with pytest.raises(ValueError):
        firmware("1.0.0", size=100)
    with pytest.raises(ValueError):
        firmware("x", app_version="x" * 32)


def test_descriptor_version_and_project_name_are_empty_by_default(tmp_path, firmware):
    """As in official MicroPython builds: nothing may rely on them."""
    image = firmware("1.0.0", {"m": "x = 1\n"})
    assert firmware.version_of(image) == "" and firmware.label_of(image) == "1.0.0"
    path = tmp_path / "fw.bin"
    path.write_bytes(image)
    out = image_info(path)
    assert "App version: \n" in out or "App version:\n" in out, out


def test_cli_image_new_run(tmp_path):
    (tmp_path / "fwinfo.py").write_text("import machine\nprint('fw module', machine.reset_cause())\n")
    fw = tmp_path / "fw.bin"
    out = mpota("sim", "image", "--version", "3.1.4", "--module", "fwinfo=%s" % (tmp_path / "fwinfo.py"),
                "--size", "64K", "-o", str(fw))
    assert out.returncode == 0, out.stderr
    assert fw.stat().st_size == 65536 and "(valid)" in image_info(fw)
    flash, fs = tmp_path / "board" / "flash.bin", tmp_path / "board" / "fs"
    assert mpota("sim", "new", "--flash", str(flash), "--fs", str(fs), "--firmware", str(fw)).returncode == 0
    assert flash.stat().st_size == 4 * 1024 * 1024
    (fs / "main.py").write_text("import fwinfo\nprint('main here')\n")
    run = mpota("sim", "run", "--flash", str(flash), "--fs", str(fs), "--halt-on-idle", "--timeout", "20")
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert "[sim] boot 1 slot=ota_0 cause=PWRON_RESET version=3.1.4 state=VALID" in lines
    assert lines[-4:] == ["Performing initial setup", "fw module 1", "main here", "[sim] halt reason=idle boots=1"]


def test_cli_errors(tmp_path):
    out = mpota("sim", "run", "--flash", str(tmp_path / "missing.bin"), "--fs", str(tmp_path))
    assert out.returncode == 2 and "sim new" in out.stderr
    out = mpota("sim", "image", "--version", "1", "--module", "nofile", "-o", str(tmp_path / "x.bin"))
    assert out.returncode == 2 and "NAME=FILE" in out.stderr
    flash = tmp_path / "f.bin"
    big = tmp_path / "big.bin"
    assert mpota("sim", "image", "--version", "1", "--size", "0x180010", "-o", str(big)).returncode == 0
    out = mpota("sim", "new", "--flash", str(flash), "--fs", str(tmp_path / "fs"), "--firmware", str(big))
    assert out.returncode == 2 and "does not fit" in out.stderr
