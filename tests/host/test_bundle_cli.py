"""`mpota bundle build` and `show`: what a maker types; errors are one line with exit code 2."""
from mpota import bundle, cli, mpy


def test_build_compiles_modules_and_keeps_main_as_source(tmp_path, capsys):
    app = tmp_path / "app"
    (app / "lib").mkdir(parents=True)
    (app / "main.py").write_text("import lib.x\n")
    (app / "lib" / "x.py").write_text("@micropython.native\ndef f():\n    return 1\n")
    (app / "data.json").write_text("{}")
    out = tmp_path / "app.bundle"
    assert cli.main(["bundle", "build", str(app), "-o", str(out), "--mpy-arch", "armv6m"]) == 0
    entries = {path: size for path, size, _ in bundle.read_table(out.read_bytes())}
    assert set(entries) == {"main.py", "lib/x.mpy", "data.json"}
    data = out.read_bytes()
    start = len(data) - sum(entries.values())
    offsets = {}
    for path in sorted(entries):
        offsets[path] = data[start:start + entries[path]]
        start += entries[path]
    assert mpy.header_arch(offsets["lib/x.mpy"]) == "armv6m"  # native code: built for the Pico's core
    assert offsets["main.py"] == b"import lib.x\n"
    assert cli.main(["bundle", "show", str(out)]) == 0
    assert "lib/x.mpy" in capsys.readouterr().out


def test_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "nomain").mkdir()
    (tmp_path / "nomain" / "x.py").write_text("")
    assert cli.main(["bundle", "build", str(tmp_path / "nomain"), "-o", str(tmp_path / "o")]) == 2
    assert "has no main.py" in capsys.readouterr().err
    (tmp_path / "junk").write_bytes(b"MOTB\x01\x05\x00")
    assert cli.main(["bundle", "show", str(tmp_path / "junk")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "main.py").write_text("")
    (tmp_path / "bad" / "my file.py").write_text("")
    assert cli.main(["bundle", "build", str(tmp_path / "bad"), "-o", str(tmp_path / "o")]) == 2
    assert "bad bundle path" in capsys.readouterr().err
