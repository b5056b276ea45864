"""`mpota mpy` and tools/mpy.py against the real mpy-cross, the unix port and mip: headers name the
architecture, bytecode builds run, tracebacks name device paths, package.json matches lib/ota."""
import contextlib
import functools
import http.server
import json
import threading

import pytest

import mpunix
from mpunix import ROOT
from mpota import cli, mpy, signing

SOURCES = sorted((ROOT / "lib" / "ota").glob("*.py"))
NATIVE = "import micropython\n\n\n@micropython.native\ndef inc(x):\n    return x + 1\n"


def test_make_mpy_builds_every_module_for_both_archs(tmp_path, capsys):
    assert cli.main(["mpy", "--arch", "xtensawin", "--arch", "armv6m", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    for arch in ("xtensawin", "armv6m"):
        built = sorted((tmp_path / arch / "ota").glob("*.mpy"))
        assert [p.stem for p in built] == [p.stem for p in SOURCES]
        for path in built:
            data = path.read_bytes()
            # lib/ota has no native code, so its bytecode is the same on every board
            assert data[:2] == b"M\x06" and mpy.header_arch(data) in (arch, "bytecode")
            assert "%8d  %s" % (len(data), path) in printed
        total = sum(p.stat().st_size for p in built)
        assert "%8d  total, %d files for %s" % (total, len(built), arch) in printed


@pytest.mark.parametrize("arch", ["xtensawin", "armv6m", "armv7emsp", "xtensa"])
def test_native_code_carries_the_arch_in_the_header(tmp_path, arch):
    package = tmp_path / "nat"
    package.mkdir()
    (package / "fast.py").write_text(NATIVE)
    (out,) = mpy.build(arch, tmp_path / "out", package=package)
    data = out.read_bytes()
    assert data[0] == ord("M") and data[1] == 6
    assert data[2] >> 2 == mpy.ARCH_CODES[arch] and mpy.header_arch(data) == arch


def test_native_code_refused_for_bytecode(tmp_path):
    package = tmp_path / "nat"
    package.mkdir()
    (package / "fast.py").write_text(NATIVE)
    with pytest.raises(mpy.BuildError, match="fast.py"):
        mpy.build("bytecode", tmp_path / "out", package=package)


def test_unknown_arch_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(mpy.BuildError, match="unknown architecture"):
        mpy.build("z80", tmp_path)
    with pytest.raises(SystemExit) as exc:
        cli.main(["mpy", "--arch", "z80", "--out", str(tmp_path)])
    assert exc.value.code == 2


@pytest.fixture(scope="module")
def bytecode_lib(tmp_path_factory):
    lib = tmp_path_factory.mktemp("bytecode-lib")
    mpy.build("bytecode", lib / "ota")
    return lib


def test_bytecode_build_runs_the_manifest_check_under_the_unix_port(bytecode_lib, tmp_path):
    key = signing.generate_key()
    signing.write_trust_file([key.public_key()], tmp_path / "trust.bin")
    tbs = signing.build_manifest(b"x" * 5000, board="esp32-generic", version="1.2.3", counter=7, chunk_size=1024,
                                 key_id=key.public_key())
    (tmp_path / "blob.bin").write_bytes(signing.sign(tbs, key))
    code = (
        "import sys, ota\nfrom ota import manifest, trust\n"
        "m = manifest.check(open(sys.argv[2], 'rb').read(), trust.load(sys.argv[1]), 'esp32-generic', 7, 1 << 20)\n"
        "print(ota.__file__, manifest.__file__, m.version, m.counter, m.chunk_count)\n"
    )
    out = mpunix.run(code, args=[str(tmp_path / "trust.bin"), str(tmp_path / "blob.bin")], path=(bytecode_lib,)).stdout
    assert out.split() == [str(bytecode_lib / "ota" / "__init__.mpy"), str(bytecode_lib / "ota" / "manifest.mpy"),
                           "1.2.3", "7", "5"]


def test_tracebacks_name_device_paths(bytecode_lib):
    code = "import sys\nfrom ota import trust\ntry:\n    trust.load('no-such-file')\nexcept OSError as e:\n    sys.print_exception(e)\n"
    err = mpunix.run(code, path=(bytecode_lib,)).stdout
    assert 'File "ota/trust.py", line' in err
    assert str(bytecode_lib) not in err and str(ROOT) not in err


def test_package_json_lists_exactly_lib_ota():
    package = json.loads((ROOT / "package.json").read_text())
    assert package["urls"] == [["ota/" + p.name, "lib/ota/" + p.name] for p in SOURCES]
    version = next(line for line in (ROOT / "lib/ota/__init__.py").read_text().splitlines() if line.startswith("__version__"))
    assert package["version"] == version.split('"')[1]


@contextlib.contextmanager
def served(directory):
    """An HTTP server on 127.0.0.1 for `directory`; yields its base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "http://127.0.0.1:%d" % server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def mip_install(url, target):
    proc = mpunix.run("import mip\nmip.install(%r, target=%r)\n" % (url, str(target)), path=(".frozen",), timeout=60)
    assert "Done" in proc.stdout, proc.stdout + proc.stderr


def test_mip_installs_the_package_from_package_json(tmp_path):
    """The unix port's own mip, fetching from the repository over HTTP, as it would from GitHub."""
    with served(ROOT) as base:
        mip_install(base + "/package.json", tmp_path / "lib")
    installed = sorted(p.name for p in (tmp_path / "lib" / "ota").iterdir())
    assert installed == [p.name for p in SOURCES]
    for p in SOURCES:
        assert (tmp_path / "lib" / "ota" / p.name).read_bytes() == p.read_bytes()


def test_make_mpy_writes_a_mip_package_of_mpy_files(tmp_path, capsys):
    assert cli.main(["mpy", "--arch", "xtensawin", "--out", str(tmp_path / "build")]) == 0
    assert "mip package" in capsys.readouterr().out
    arch_dir = tmp_path / "build" / "xtensawin"
    with served(arch_dir) as base:
        mip_install(base + "/package.json", tmp_path / "lib")
    built = sorted((arch_dir / "ota").glob("*.mpy"))
    assert sorted(p.name for p in (tmp_path / "lib" / "ota").iterdir()) == [p.stem + ".mpy" for p in SOURCES]
    for p in built:
        assert (tmp_path / "lib" / "ota" / p.name).read_bytes() == p.read_bytes()
