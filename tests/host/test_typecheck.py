"""Device code type-checks against the MicroPython ESP32 stubs (mypy, `[tool.mypy]` in
pyproject.toml), so a call the firmware does not offer, or offers with other arguments, fails on
the host instead of on a board.

Neither stub package is found by mypy on its own: micropython-esp32-stubs installs bare top-level
`.pyi` modules (no PEP 561 package), and micropython-stdlib-stubs is a typeshed `stdlib/` tree.
So mypy gets the latter as its typeshed and a directory of links to the former as MYPYPATH."""
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest

from mpunix import ROOT

DEVICE_FILES = sorted((ROOT / "lib" / "ota").glob("*.py")) + [ROOT / "boot.py", ROOT / "main.py"]
RP2_STUBS = ROOT / ".venv" / "stubs-rp2"  # micropython-rp2-stubs, installed apart by `make setup`
# Modules the device code imports that CPython also has: they must come from the stubs too.
MICROPYTHON_MODULES = ["esp32", "machine", "micropython", "tls", "time", "socket", "select", "hashlib",
                       "binascii", "random"]


def _top_level(name):
    """{top-level name in site-packages: its path} for the files of installed distribution `name`."""
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(name + " is not installed: run `make setup`")
    tops = {f.parts[0] for f in dist.files or [] if len(f.parts) > 1 or f.suffix == ".pyi"}
    return {t: dist.locate_file(t) for t in tops if not t.endswith(".dist-info") and t not in ("..", "__pycache__")}


@pytest.fixture(scope="module")
def stub_paths(tmp_path_factory):
    """(typeshed dir, stub dir): the stdlib stubs as typeshed, links to the port's stub modules."""
    if importlib.util.find_spec("mypy") is None:
        pytest.fail("mypy is not installed: run `make setup`")
    stdlib = _top_level("micropython-stdlib-stubs")
    assert (stdlib["stdlib"] / "VERSIONS").is_file(), "micropython-stdlib-stubs has no typeshed stdlib/"
    modules = _top_level("micropython-esp32-stubs")
    assert "esp32.pyi" in modules and "machine.pyi" in modules, sorted(modules)
    modules["_mpy_shed"] = stdlib["_mpy_shed"]  # helper types the port stubs import
    stubs = tmp_path_factory.mktemp("mpy-stubs")
    for name, path in modules.items():
        (stubs / name).symlink_to(path)
    return stdlib["stdlib"].parent, stubs


def mypy(stub_paths, tmp_path, *args, config=ROOT / "pyproject.toml"):
    typeshed, stubs = stub_paths
    env = dict(os.environ, MYPYPATH=str(stubs))
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(config),
           "--custom-typeshed-dir", str(typeshed), "--cache-dir", str(tmp_path / "mypy-cache"), *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_device_code_type_checks(stub_paths, tmp_path):
    proc = mypy(stub_paths, tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    checked = re.search(r"Success: no issues found in (\d+) source files", out)
    assert checked and int(checked.group(1)) == len(DEVICE_FILES), out


def test_micropython_modules_come_from_the_stubs(stub_paths, tmp_path):
    """`time.ticks_ms` and friends exist only in the stubs: CPython's typeshed must not answer."""
    typeshed, stubs = stub_paths
    proc = mypy(stub_paths, tmp_path, "--verbose")
    parsed = dict((m, p) for p, m in re.findall(r"LOG:  Parsing (\S+) \(([\w.]+)\)", proc.stderr))
    for module in MICROPYTHON_MODULES:
        assert module in parsed, "device code no longer imports %s? update the list" % module
        assert parsed[module] == str(stubs / (module + ".pyi")), (module, parsed[module])
    assert parsed["builtins"] == str(typeshed / "stdlib" / "builtins.pyi")


def test_a_wrong_call_into_the_firmware_is_caught(stub_paths, tmp_path):
    """The check cannot pass vacuously: one bad call in a scratch copy is exactly what it reports."""
    lib = tmp_path / "lib"
    shutil.copytree(ROOT / "lib" / "ota", lib / "ota", ignore=shutil.ignore_patterns("__pycache__"))
    policy = lib / "ota" / "policy.py"
    source = policy.read_text()
    assert "import time" in source
    bad = "    return time.ticks_diff(time.ticks_ms(), \"soon\")"
    policy.write_text(source + "\n\ndef _probe():\n" + bad + "\n")
    bad_line = policy.read_text().splitlines().index(bad) + 1
    proc = mypy(stub_paths, tmp_path, str(lib / "ota"), str(ROOT / "boot.py"), str(ROOT / "main.py"))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "policy.py:%d: error:" % bad_line in out and "ticks_diff" in out, out
    assert "Found 1 error in 1 file" in out, out


@pytest.fixture(scope="module")
def rp2_stub_paths(stub_paths, tmp_path_factory):
    """(typeshed dir, stub dir) with the rp2 port's modules (micropython-rp2-stubs) instead."""
    if not (RP2_STUBS / "machine.pyi").is_file() or not (RP2_STUBS / "rp2").is_dir():
        pytest.fail("micropython-rp2-stubs is not in %s: run `make setup`" % RP2_STUBS)
    stubs = tmp_path_factory.mktemp("rp2-stubs")
    for path in RP2_STUBS.iterdir():
        if path.suffix == ".pyi" or (path.is_dir() and not path.name.endswith(".dist-info")):
            (stubs / path.name).symlink_to(path)
    (stubs / "_mpy_shed").symlink_to(stub_paths[1] / "_mpy_shed")
    return stub_paths[0], stubs


def test_device_code_type_checks_against_the_rp2_port(rp2_stub_paths, tmp_path):
    """The same code on a Pico W: `esp32` does not exist there (the code imports it only where a
    firmware slot is used, and runs without it); every other call must be one the rp2 port has.
    The ignores written for the esp32 stubs may be unused here."""
    config = tmp_path / "mypy-rp2.toml"
    config.write_text((ROOT / "pyproject.toml").read_text().replace("warn_unused_ignores = true", "warn_unused_ignores = false")
                      + '\n[[tool.mypy.overrides]]\nmodule = ["esp32"]\nignore_missing_imports = true\n')
    proc = mypy(rp2_stub_paths, tmp_path, "--verbose", config=config)
    assert proc.returncode == 0, proc.stdout
    checked = re.search(r"Success: no issues found in (\d+) source files", proc.stdout)
    assert checked and int(checked.group(1)) == len(DEVICE_FILES), proc.stdout
    parsed = dict((m, p) for p, m in re.findall(r"LOG:  Parsing (\S+) \(([\w.]+)\)", proc.stderr))
    assert parsed["machine"] == str(rp2_stub_paths[1] / "machine.pyi")
    assert "esp32" not in parsed
