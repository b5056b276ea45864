"""A Pico W from nothing, as the README tells it: `mpota bundle build` an application, `mpota
provision --board rp2-pico-w --arch armv6m --main boards/rp2/main.py --bundle app.bundle`, copy
the staging folder onto a fresh board (erased storage: the first boot formats it), power on:
the launcher runs the first bundle, which is installed and confirmed."""
import json

from e2e_env import Fleet
from mpunix import ROOT
from rp2_env import Rp2Device, rp2fs
from test_provision import Inputs, provision_cli
from tests.device.virtualboard import VirtualPicoProcess
from wifi_env import AccessPoint
from mpota import cli, signing


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


def test_readme_pico_w_provisioned_through_mpremote_joins_its_wifi_and_reports(tmp_path, capsys, mosquitto,
                                                                                 sim_device, monkeypatch):
    """The README's Pico W commands for real, on the virtual Pico (the simulator behind a pty):
    `mpota bundle build` the example application, `mpota provision ... --wifi-ssid --bundle
    --port PTY` (mpremote copies the staging folder onto the fresh board and resets it). The
    update service in the example application brings the Wi-Fi up from ota_config.json and the
    board reports itself online with its first bundle, through the access point only."""
    broker = mosquitto(tls=True)
    assert cli.main(["bundle", "build", str(ROOT / "boards" / "rp2" / "app"), "-o", str(tmp_path / "app.bundle"),
                     "--mpy-arch", "bytecode"]) == 0  # bytecode: the unix port runs it; a Pico takes armv6m
    trust = tmp_path / "trust.bin"
    signing.write_trust_file([signing.generate_key().public_key()], trust)
    pico = VirtualPicoProcess(tmp_path / "pico")  # erased storage, as a new board after the .uf2 is flashed
    ap = AccessPoint(pico.flash, broker.port)
    fleet = Fleet(tmp_path, broker, sim_device, fleet="home")
    try:
        pico.start()
        pico.console = ""  # for Fleet's failure report
        fleet.boards["pico-01"] = pico
        monkeypatch.setenv("MPOTA_WIFI_PASSWORD", "correct horse")
        code = cli.main(["provision", "--device-id", "pico-01", "--fleet", "home", "--board", "rp2-pico-w",
                         "--arch", "bytecode", "--trust", str(trust), "--broker", "127.0.0.1:%d" % ap.port,
                         "--ca", str(broker.pki.ca_file), "--server-hostname", "localhost",
                         "--wifi-ssid", "home", "--wifi-country", "GB", "--bundle", str(tmp_path / "app.bundle"),
                         "--bundle-version", "1", "--out", str(tmp_path / "staging"), "--port", pico.port])
        assert code == 0, capsys.readouterr()
        states = fleet.wait_state(lambda s: (s.get("pico-01") or {}).get("online") is True
                                  and s["pico-01"].get("version") == "1", timeout=180)
        asked = ap.requests()
    finally:
        pico.console = pico.log()
        pico.stop()
        ap.close()
    assert states["pico-01"]["state"] == "idle"
    assert asked >= 1 and ap.accepted >= 1  # the board's broker connection went through the AP
    assert "Traceback" not in pico.log(), pico.log()
