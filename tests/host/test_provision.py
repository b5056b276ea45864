"""`mpota provision`: the commands it prints, checked line by line and parsed by the installed
esptool, mpremote and ampy; the staging folder's content; refusals; and the staging folder
booting as a simulated board's filesystem."""
import argparse
import json
import shlex
import stat
import subprocess
import sys

import click
import esptool
import pytest
from ampy import cli as ampy_cli
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from mpremote import main as mpremote_main

import flashimage
import mpunix
from mpota.pki import PKI
from mpunix import ROOT
from mpota import cli, mpy, provision, signing


def pem_to_der(path):
    return x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(serialization.Encoding.DER)

PORT = "/dev/ttyUSB0"
CLEAN = provision.CLEAN_OLD_PACKAGE
MAIN = "import ota, ota.config, ota.trust\ncfg = ota.config.load()\n" \
       "print('PROVISIONED', cfg['device_id'], cfg['broker']['host'], len(ota.trust.load()), ota.__file__)\n"
SCHEMA = {"device_id", "board", "fleet", "group", "root", "broker", "wdt_ms", "confirm_within_ms", "install", "wifi"}
BROKER_SCHEMA = {"host", "port", "tls", "ca", "cert", "key", "server_hostname", "user", "password", "keepalive"}


class Inputs:
    """What a maker brings: a CA, a device certificate, a trust file, a main.py, a firmware image."""

    def __init__(self, d):
        self.dir = d
        pki = PKI(d / "pki")
        self.ca = pki.ca_file
        leaf = pki.issue("dev-7")
        self.cert, self.key = leaf["cert_file"], leaf["key_file"]
        self.other_key = pki.issue("dev-8")["key_file"]
        self.trust = d / "trust.bin"
        signing.write_trust_file([signing.generate_key().public_key()], self.trust)
        self.main = d / "main.py"
        self.main.write_text(MAIN)
        self.firmware = d / "fw.bin"
        self.firmware.write_bytes(flashimage.full_image())
        self.password = d / "mqtt-password"
        self.password.write_text("s3cret-Pa55\n")
        self.out = d / "stage"

    def args(self, *extra, auth="cert", arch="xtensawin"):
        base = ["provision", "--device-id", "dev-7", "--trust", str(self.trust), "--broker", "mqtt.example.com:8884",
                "--ca", str(self.ca), "--main", str(self.main), "--out", str(self.out), "--arch", arch,
                "--fleet", "plant", "--group", "canary"]
        if auth == "cert":
            base += ["--cert", str(self.cert), "--key", str(self.key)]
        elif auth == "password":
            base += ["--user", "dev-7", "--password-file", str(self.password)]
        return base + list(extra)


@pytest.fixture
def inputs(tmp_path):
    return Inputs(tmp_path)


def provision_cli(argv, capsys):
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def expected_mpremote(out):
    connect = "mpremote connect %s " % PORT
    entries = " ".join(str(out / n) for n in ("lib", ".ota", "certs", "ota_config.json", "boot.py", "main.py"))
    return [connect + "exec " + shlex.quote(CLEAN), connect + "fs cp -r " + entries + " :", connect + "reset"]


def test_dry_run_prints_esptool_then_mpremote(inputs, capsys):
    code, out, err = provision_cli(inputs.args("--port", PORT, "--firmware", str(inputs.firmware), "--dry-run"), capsys)
    assert code == 0, err
    assert out.splitlines() == [
        "esptool --chip esp32 --port /dev/ttyUSB0 --baud 460800 write-flash -z 0x1000 %s" % inputs.firmware,
    ] + expected_mpremote(inputs.out)
    assert "staged" in err and "not run" in err


def test_dry_run_erase_chip_and_baud(inputs, capsys):
    inputs.firmware.write_bytes(flashimage.full_image(flash_offset=0x0))  # the S3's bootloader sits at 0
    argv = inputs.args("--port", PORT, "--firmware", str(inputs.firmware), "--erase", "--chip", "esp32s3",
                       "--baud", "921600", "--dry-run")
    code, out, err = provision_cli(argv, capsys)
    assert code == 0, err
    assert out.splitlines()[:2] == [
        "esptool --chip esp32s3 --port /dev/ttyUSB0 --baud 921600 erase-flash",
        "esptool --chip esp32s3 --port /dev/ttyUSB0 --baud 921600 write-flash -z 0x0 %s" % inputs.firmware,
    ]


def test_dry_run_with_ampy(inputs, capsys):
    code, out, err = provision_cli(inputs.args("--port", PORT, "--tool", "ampy", "--dry-run"), capsys)
    assert code == 0, err
    s = inputs.out
    assert out.splitlines() == [
        "ampy --port /dev/ttyUSB0 rmdir --missing-okay lib/ota",
        "ampy --port /dev/ttyUSB0 put %s/lib lib" % s,
        "ampy --port /dev/ttyUSB0 put %s/.ota .ota" % s,
        "ampy --port /dev/ttyUSB0 put %s/certs certs" % s,
        "ampy --port /dev/ttyUSB0 put %s/ota_config.json ota_config.json" % s,
        "ampy --port /dev/ttyUSB0 put %s/boot.py boot.py" % s,
        "ampy --port /dev/ttyUSB0 put %s/main.py main.py" % s,
        "ampy --port /dev/ttyUSB0 reset --hard",
    ]


def test_without_port_only_stages_and_shows_the_next_commands(inputs, capsys):
    code, out, err = provision_cli(inputs.args("--firmware", str(inputs.firmware)), capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("esptool --chip esp32 --port PORT ") and lines[1].startswith("mpremote connect PORT exec ")
    assert "replace PORT" in err and (inputs.out / "ota_config.json").exists()


# The installed tools' own parsers, run without a board: a command they would refuse fails here.

def _click_parse(group, prog, argv):
    ctx = group.make_context(prog, list(argv))
    rest = ctx._protected_args + ctx.args
    name, command, rest = group.resolve_command(ctx, rest)
    assert name == ctx._protected_args[0], "%s: %r is a deprecated spelling" % (prog, ctx._protected_args[0])
    sub = command.make_context(name, rest, parent=ctx)
    return ctx.params, name, sub.params


def parse_esptool(argv):
    esptool.cli._esp = None  # set by esptool's own entry point before parsing
    group, name, params = _click_parse(esptool.cli, "esptool", argv)
    for pair in params.get("addr_filename", ()):
        pair[1].close()
    deprecated = {k for k, v in esptool.cli.DEPRECATED_OPTIONS.items() if k != v}
    assert not deprecated & set(argv), "deprecated esptool option in %r" % argv
    return group, name, params


def parse_ampy(argv):
    return _click_parse(ampy_cli.cli, "ampy", argv)


def parse_mpremote(argv):
    """mpremote's command loop (expansions, then each command's own argparse), without running."""
    mpremote_main.prepare_command_expansions(mpremote_main.load_user_config())
    remaining, parsed = list(argv), []
    while remaining:
        mpremote_main.do_command_expansion(remaining)
        name = remaining.pop(0)
        parser = mpremote_main._COMMANDS[name][1]()
        parser.prog = name
        parser.add_argument("next_command", nargs=argparse.REMAINDER)
        args = parser.parse_args(remaining)
        remaining = args.next_command
        parsed.append((name, args))
    return parsed


@pytest.mark.parametrize("tool", ["mpremote", "ampy"])
def test_every_printed_command_parses_with_the_installed_tool(inputs, capsys, tool):
    argv = inputs.args("--port", PORT, "--firmware", str(inputs.firmware), "--erase", "--tool", tool, "--dry-run")
    code, out, err = provision_cli(argv, capsys)
    assert code == 0, err
    seen = []
    for line in out.splitlines():
        words = shlex.split(line)
        seen.append(words[0])
        if words[0] == "esptool":
            group, name, params = parse_esptool(words[1:])
            assert (group["chip"], group["port"], group["baud"]) == ("esp32", PORT, 460800)
            if name == "write-flash":
                assert params["compress"] and params["addr_filename"][0][0] == 0x1000
                assert params["addr_filename"][0][1].name == str(inputs.firmware)
            else:
                assert name == "erase-flash"
        elif words[0] == "mpremote":
            parsed = parse_mpremote(words[1:])
            assert parsed[0][0] == "connect" and parsed[0][1].device == [PORT]
            step = parsed[1]
            if step[0] == "fs":
                assert step[1].command == ["cp"] and step[1].recursive and step[1].path[-1] == ":"
                assert all((inputs.out / p).exists() for p in step[1].path[:-1])
            else:  # our cleanup, or `reset`, which mpremote expands to an exec of machine.reset()
                assert step[0] == "exec" and len(parsed) == 2
                assert step[1].expr == [CLEAN] or (words[-1] == "reset" and "machine.reset()" in step[1].expr[0])
        else:
            assert words[0] == "ampy"
            group, name, params = parse_ampy(words[1:])
            assert group["port"] == PORT and name in ("rmdir", "put", "reset")
            if name == "put":
                assert (inputs.out / params["remote"]).exists() and params["local"] == str(inputs.out / params["remote"])
            elif name == "reset":
                assert params["mode"] == "NORMAL"
            else:
                assert params == {"remote_folder": "lib/ota", "missing_okay": True}
    assert seen[:2] == ["esptool", "esptool"] and set(seen[2:]) == {tool}


def test_the_tool_parsers_do_refuse_bad_spellings(inputs):
    """The checks above have teeth: old or wrong spellings fail in the same parsers."""
    with pytest.raises(AssertionError, match="deprecated"):
        parse_esptool(["--chip", "esp32", "write_flash", "0x1000", str(inputs.firmware)])
    with pytest.raises(click.NoSuchOption):
        parse_esptool(["--chip", "esp32", "write-flash", "--zip", "0x1000", str(inputs.firmware)])
    with pytest.raises(click.BadParameter):
        parse_esptool(["--chip", "esp32", "write-flash", "0x1000", str(inputs.dir / "missing.bin")])
    with pytest.raises(click.NoSuchOption):
        parse_ampy(["--port", PORT, "rmdir", "--missing-ok", "lib/ota"])
    with pytest.raises(SystemExit):
        parse_mpremote(["connect", PORT, "fs", "cp", "--recurse", "a", ":"])


@pytest.mark.parametrize("before", [
    {"lib/ota/__init__.py": "", "lib/ota/old.py": "", "lib/ota/trust.mpy": "", "lib/keep.py": ""},
    {"lib/keep.py": ""},
    {},
], ids=["old-package", "lib-without-ota", "empty"])
def test_the_cleanup_run_on_the_board_removes_only_the_old_package(tmp_path, before):
    for name, text in before.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    mpunix.run(CLEAN, cwd=tmp_path)
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == (["lib/keep.py"] if before else [])


def staged_files(out):
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())


def test_staging_folder_mirrors_the_board(inputs, capsys):
    code, out, err = provision_cli(inputs.args(), capsys)
    assert code == 0, err
    s = inputs.out
    modules = sorted("lib/ota/%s.mpy" % p.stem for p in (ROOT / "lib" / "ota").glob("*.py"))
    assert staged_files(s) == sorted(modules + [".ota/trust.bin", "boot.py", "certs/ca.der", "certs/device.der",
                                                "certs/device.key.der", "main.py", "ota_config.json"])
    for name in modules:
        data = (s / name).read_bytes()
        assert data[:2] == b"M\x06" and mpy.header_arch(data) in ("xtensawin", "bytecode")
    assert (s / ".ota/trust.bin").read_bytes() == inputs.trust.read_bytes()
    assert (s / "certs/ca.der").read_bytes() == pem_to_der(inputs.ca)
    assert (s / "certs/device.der").read_bytes() == pem_to_der(inputs.cert)
    key = serialization.load_der_private_key((s / "certs/device.key.der").read_bytes(), None)
    assert key.private_numbers() == serialization.load_pem_private_key(inputs.key.read_bytes(), None).private_numbers()
    assert stat.S_IMODE((s / "certs/device.key.der").stat().st_mode) == 0o600
    assert stat.S_IMODE(s.stat().st_mode) & 0o077 == 0
    assert (s / "boot.py").read_bytes() == (ROOT / "boot.py").read_bytes()
    assert (s / "main.py").read_text() == MAIN
    config = json.loads((s / "ota_config.json").read_text())
    assert set(config) == SCHEMA and set(config["broker"]) == BROKER_SCHEMA
    assert config["device_id"] == "dev-7" and config["fleet"] == "plant" and config["group"] == "canary"
    assert config["board"] == "esp32-generic" and config["root"] == "ota"
    assert config["broker"] == {"host": "mqtt.example.com", "port": 8884, "tls": True, "ca": "certs/ca.der",
                                "cert": "certs/device.der", "key": "certs/device.key.der", "server_hostname": None,
                                "user": None, "password": None, "keepalive": 30}
    assert (config["wdt_ms"], config["confirm_within_ms"], config["install"]) == (30000, 300000, "now")
    key_text = inputs.key.read_text()
    assert "PRIVATE KEY" not in out + err and key_text not in out + err


def test_schema_is_the_devices(inputs):
    """The keys written are the ones lib/ota/config.py knows, so a renamed setting fails here."""
    defaults = provision.device_defaults()
    assert set(defaults) == SCHEMA
    assert set(defaults["broker"]) <= BROKER_SCHEMA
    source = (ROOT / "lib/ota/config.py").read_text()
    assert all(name in source for name in BROKER_SCHEMA)


def test_password_login_stays_out_of_the_output(inputs, capsys):
    code, out, err = provision_cli(inputs.args("--broker", "[fd00::1]", "--server-hostname", "mqtt.lan",
                                               auth="password"), capsys)
    assert code == 0, err
    s = inputs.out
    config = json.loads((s / "ota_config.json").read_text())
    assert config["broker"]["host"] == "fd00::1" and config["broker"]["port"] == 8883
    assert config["broker"]["server_hostname"] == "mqtt.lan"
    assert (config["broker"]["user"], config["broker"]["password"]) == ("dev-7", "s3cret-Pa55")
    assert (config["broker"]["cert"], config["broker"]["key"]) == (None, None)
    assert stat.S_IMODE((s / "ota_config.json").stat().st_mode) == 0o600
    assert "s3cret" not in out + err
    assert not (s / "certs/device.key.der").exists()


def test_a_second_run_leaves_nothing_of_the_first(inputs, capsys):
    assert provision_cli(inputs.args(), capsys)[0] == 0
    (inputs.out / "stray.txt").write_text("from before")
    assert provision_cli(inputs.args(auth="password"), capsys)[0] == 0
    assert "certs/device.key.der" not in staged_files(inputs.out) and "stray.txt" not in staged_files(inputs.out)


@pytest.mark.parametrize("device_id", ["", "a/b", "fleet+", "#", "x" * 65, "tab\there"])
def test_bad_device_id_is_a_usage_error(inputs, capsys, device_id):
    argv = inputs.args()
    argv[argv.index("dev-7")] = device_id
    code, out, err = provision_cli(argv, capsys)
    assert code == 2 and "bad device id" in err and out == ""
    assert not inputs.out.exists()


def test_longest_device_id_is_accepted(inputs, capsys):
    argv = inputs.args()
    argv[argv.index("dev-7")] = "d" * 64
    assert provision_cli(argv, capsys)[0] == 0


def refusals(inputs):
    encrypted = inputs.dir / "encrypted.key"
    key = serialization.load_pem_private_key(inputs.key.read_bytes(), None)
    encrypted.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.BestAvailableEncryption(b"pw")))
    return {
        "missing-trust": (["--trust", str(inputs.dir / "nope.bin")], "cannot read the trust file"),
        "not-a-trust-file": (["--trust", str(inputs.ca)], "not a trust file"),
        "missing-ca": (["--ca", str(inputs.dir / "nope.pem")], "cannot read the CA"),
        "ca-not-pem": (["--ca", str(inputs.trust)], "not a PEM certificate"),
        "encrypted-key": (["--key", str(encrypted)], "encrypted"),
        "foreign-key": (["--key", str(inputs.other_key)], "is not the key of"),
        "cert-without-key": (["--key", None], "go together"),
        "cert-and-password": (["--user", "u", "--password-file", str(inputs.password)], "not both"),
        "missing-main": (["--main", str(inputs.dir / "nope.py")], "cannot read the main.py"),
        "not-firmware": (["--port", PORT, "--firmware", str(inputs.ca)], "not a full ESP32 firmware"),
        "missing-firmware": (["--port", PORT, "--firmware", str(inputs.dir / "nope.bin")], "cannot read the firmware"),
        "erase-alone": (["--port", PORT, "--erase", True], "--erase needs --firmware"),
        "unknown-chip": (["--port", PORT, "--firmware", str(inputs.firmware), "--chip", "esp8266"], "unknown chip"),
        "bad-port": (["--broker", "host:99999"], "bad broker port"),
        "bad-fleet": (["--fleet", "a/b"], "bad fleet"),
        "bad-board": (["--board", "esp32 generic"], "bad board id"),
    }


REFUSALS = ["missing-trust", "not-a-trust-file", "missing-ca", "ca-not-pem", "encrypted-key", "foreign-key",
            "cert-without-key", "cert-and-password", "missing-main", "not-firmware", "missing-firmware", "erase-alone",
            "unknown-chip", "bad-port", "bad-fleet", "bad-board"]


@pytest.mark.parametrize("case", REFUSALS)
def test_bad_input_is_a_usage_error_and_stages_nothing(inputs, capsys, case):
    change, message = refusals(inputs)[case]
    argv = inputs.args("--dry-run")  # a slip in a case must never reach a real board
    for option, value in zip(change[::2], change[1::2]):
        if value is True:  # a flag
            argv.append(option)
        elif option in argv:
            i = argv.index(option)
            argv[i:i + 2] = [option, value] if value is not None else []
        else:
            argv += [option, value]
    code, out, err = provision_cli(argv, capsys)
    assert code == 2 and message in err, err
    assert not inputs.out.exists()


def test_a_folder_that_is_not_staging_is_never_emptied(inputs, capsys):
    inputs.out.mkdir()
    (inputs.out / "thesis.tex").write_text("precious")
    code, out, err = provision_cli(inputs.args(), capsys)
    assert code == 2 and "not a staging folder" in err
    assert (inputs.out / "thesis.tex").read_text() == "precious"


def test_a_failing_command_exits_1_and_names_it(inputs):
    """Real esptool against a port that does not exist: the run stops there, mpremote never starts."""
    port = str(inputs.dir / "no-such-port")
    argv = inputs.args("--port", port, "--firmware", str(inputs.firmware))
    proc = subprocess.run([sys.executable, "-m", "mpota"] + argv[0:], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1, proc.stderr
    first = "esptool --chip esp32 --port %s --baud 460800 write-flash -z 0x1000 %s" % (port, inputs.firmware)
    assert proc.stdout.splitlines()[0] == first
    assert "error: command failed (exit 2): " + first in proc.stderr
    assert "mpremote" not in proc.stdout and "Traceback" not in proc.stderr


def test_usage_error_has_no_traceback(inputs):
    argv = inputs.args()
    argv[argv.index("dev-7")] = "a/b"
    proc = subprocess.run([sys.executable, "-m", "mpota"] + argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.startswith("error: bad device id") and "Traceback" not in proc.stderr


def test_staged_board_boots_from_the_mpy_files(inputs, capsys, sim_device, firmware):
    """The staging folder (bytecode build: the unix port cannot run xtensa code) as a simulated
    board's filesystem: boot.py runs ota.boot(), main.py loads the config and the trust file."""
    code, out, err = provision_cli(inputs.args(arch="bytecode"), capsys)
    assert code == 0, err
    files = {name: (inputs.out / name).read_bytes() for name in staged_files(inputs.out)}
    device = sim_device(firmware("1.0.0"), files, heapsize="160K")  # as the pipeline tests: 64-bit objects
    console = device.run(timeout=30)
    assert "Traceback" not in console, console
    assert "PROVISIONED dev-7 mqtt.example.com 1 /lib/ota/__init__.mpy" in console  # sys.path has /lib
    assert [b["version"] for b in device.boot_log()] == ["1.0.0"]
