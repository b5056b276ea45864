"""The root manifest.py, read as MicroPython's tools/manifestfile.py reads it: it keeps the
port's default frozen modules and freezes every module of lib/ota as the package `ota`."""
from mpunix import ROOT


def test_manifest_freezes_the_ota_package_on_top_of_the_ports_defaults():
    calls = []
    env = {"include": lambda path, **kw: calls.append(("include", path, kw)),
           "package": lambda path, files=None, base_path=".", opt=None: calls.append(("package", path, base_path))}
    exec(compile((ROOT / "manifest.py").read_text(), "manifest.py", "exec"), env)
    assert calls[0] == ("include", "$(PORT_DIR)/boards/manifest.py", {})
    assert calls[1:] == [("package", "ota", "lib")]
    package = ROOT / calls[1][2] / calls[1][1]  # base_path is relative to the manifest's folder
    assert (package / "__init__.py").exists() and (package / "updater.py").exists() and (package / "net.py").exists()
