"""A Pico W from nothing, as the README tells it: `mpota bundle build` an application, `mpota
provision --board rp2-pico-w --arch armv6m --main boards/rp2/main.py --bundle app.bundle`, copy
the staging folder onto a fresh board (erased storage: the first boot formats it), power on:
the launcher runs the first bundle, which is installed and confirmed."""
import json

from mpunix import ROOT
from rp2_env import Rp2Device, rp2fs
from test_provision import Inputs, provision_cli
from mpota import cli


def test_fresh_pico_provisioned_with_a_first_bundle_runs_it(tmp_path, capsys):
    app = tmp_path / "app"
    (app / "lib").mkdir(parents=True)
    (app / "main.py").write_text("import greeting\nprint('APP', greeting.TEXT)\n")
    (app / "lib" / "greeting.py").write_text("TEXT = 'hello'\n")
    (app / "greeting.py").write_text("from lib.greeting import TEXT\n")
    assert cli.main(["bundle", "build", str(app), "-o", str(tmp_path / "app.bundle"), "--mpy-arch", "bytecode"]) == 0
    inputs = Inputs(tmp_path / "in")
    argv = inputs.args("--board", "rp2-pico-w", "--bundle", str(tmp_path / "app.bundle"), "--bundle-version", "0.1.0",
                       arch="bytecode")  # bytecode: the unix port runs it; a Pico takes armv6m
    del argv[argv.index("--main"):argv.index("--main") + 2]  # with --bundle: the launcher
    code, out, err = provision_cli(argv + ["--dry-run"], capsys)
    assert code == 0, err
    assert " %s " % (inputs.out / "apps") in out  # deployed with the rest
    record = json.loads((inputs.out / ".ota" / "bundle").read_bytes()[:-4])
    assert (record["active"], record["version"], record["trial"]) == ("a", "0.1.0", None)
    assert (inputs.out / "apps" / "a" / "lib" / "greeting.mpy").exists()
    assert (inputs.out / "main.py").read_text() == (ROOT / "boards" / "rp2" / "main.py").read_text()

    pico = Rp2Device(tmp_path / "pico")  # erased storage, as a new board after the .uf2 is flashed
    rp2fs.copy_tree(pico.flash, inputs.out)
    console = pico.run(timeout=30)
    assert "APP hello" in console, console
    assert "Traceback" not in console, console
