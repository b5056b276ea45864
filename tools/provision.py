"""Prepare one board: its identity, credentials, trust file and config, staged as the board's
filesystem, and the esptool / mpremote / ampy commands that flash and deploy it.

Everything is checked on the host before any command touches the board: a missing or malformed
file is refused here rather than discovered on a board that then cannot update.
"""
import copy
import importlib.util
import ipaddress
import json
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mpota import imagecheck, mpy, signing
from mpota import romfs as romfs_image

DER = serialization.Encoding.DER

ROOT = Path(__file__).resolve().parents[1]
NAME_MAX = 64  # device id, fleet and group are MQTT topic levels
FORBIDDEN = "/+#"
TLS_PORT = 8883
BROKER_KEYS = ("host", "port", "tls", "ca", "cert", "key", "server_hostname", "user", "password", "keepalive")
# Where MicroPython's full ESP32 images (bootloader, partition table, app) start in flash.
FLASH_OFFSETS = {"esp32": 0x1000, "esp32s2": 0x1000, "esp32s3": 0x0, "esp32c3": 0x0}
# Files on the board, in deploy order: the package before the boot.py that imports it.
# DER on the device: the form MicroPython's tls module loads on every port (PEM needs a build
# option some ports lack).
CA_FILE, CERT_FILE, KEY_FILE = "certs/ca.der", "certs/device.der", "certs/device.key.der"
DEPLOY_ORDER = ("lib", ".ota", "certs", "apps", "ota_config.json", "boot.py", "main.py")  # apps: a first app bundle
# Run on the board before copying: drops an older lib/ota, whose .py files would shadow the .mpy.
CLEAN_OLD_PACKAGE = ('import os; d = "lib/ota"; [os.remove(d + "/" + n) for n in (os.listdir(d) if "ota" in '
                     '(os.listdir("lib") if "lib" in os.listdir() else ()) else ())]')


class ProvisionError(Exception):
    """Bad input the user can fix: a missing file, a bad name, a credential that does not parse."""


class CommandFailed(Exception):
    """A flashing or deploy command exited with an error; `command` is the one that failed."""

    def __init__(self, command, returncode):
        super().__init__("command failed (exit %s): %s" % (returncode, quote(command)))
        self.command = command


def device_defaults():
    """The device's own config defaults (lib/ota/config.py), so the host writes the same schema."""
    spec = importlib.util.spec_from_file_location("_ota_device_config", ROOT / "lib" / "ota" / "config.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.DEFAULTS


def check_name(kind, value):
    """Device ids, fleets and groups are topic levels: 1..64 printable characters, no / + #."""
    if not 1 <= len(value) <= NAME_MAX or not value.isprintable() or any(c in value for c in FORBIDDEN):
        raise ProvisionError("bad %s %r: 1 to %d printable characters, none of %s" % (kind, value, NAME_MAX, FORBIDDEN))
    return value


def parse_broker(text):
    """`HOST`, `HOST:PORT` or `[IPv6]:PORT` -> (host, port); the port defaults to 8883 (TLS)."""
    host, port = text, None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ProvisionError("bad broker %r: use [ADDRESS]:PORT" % text)
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    elif ":" in text:
        raise ProvisionError("bad broker %r: write an IPv6 address as [ADDRESS]:PORT" % text)
    if not host:
        raise ProvisionError("bad broker %r: no host" % text)
    if port is None:
        return host, TLS_PORT
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ProvisionError("bad broker port in %r" % text)
    return host, int(port)


def _read(path, what):
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ProvisionError("cannot read the %s %s: %s" % (what, path, exc.strerror or exc))


def read_credentials(ca, cert=None, key=None):
    """{staged name: DER bytes} for the CA and, when given, the device's certificate and key,
    read from PEM files.

    The key must be unencrypted (the device has nowhere to keep a password) and match the cert."""
    try:
        files = {CA_FILE: x509.load_pem_x509_certificate(_read(ca, "CA certificate")).public_bytes(DER)}
    except ValueError:
        raise ProvisionError("%s is not a PEM certificate" % ca)
    if (cert is None) != (key is None):
        raise ProvisionError("--cert and --key go together")
    if cert is None:
        return files
    try:
        certificate = x509.load_pem_x509_certificate(_read(cert, "device certificate"))
    except ValueError:
        raise ProvisionError("%s is not a PEM certificate" % cert)
    try:
        private = serialization.load_pem_private_key(_read(key, "device key"), password=None)
    except TypeError:
        raise ProvisionError("%s is encrypted: the device needs the key unencrypted" % key)
    except ValueError:
        raise ProvisionError("%s is not a PEM private key" % key)
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if certificate.public_key().public_bytes(*spki) != private.public_key().public_bytes(*spki):
        raise ProvisionError("%s is not the key of %s" % (key, cert))
    files[CERT_FILE] = certificate.public_bytes(DER)
    files[KEY_FILE] = private.private_bytes(DER, serialization.PrivateFormat.TraditionalOpenSSL,
                                            serialization.NoEncryption())
    return files


def read_trust(path):
    data = _read(path, "trust file")
    if data[:4] != signing.TRUST_MAGIC or data[4:5] != bytes([signing.TRUST_VERSION]):
        raise ProvisionError("%s is not a trust file (make one with `mpota keygen`)" % path)
    return data


def wifi_config(ssid, password, *, hostname=None, country=None, ifconfig=None):
    """The config's `wifi` section (lib/ota/net.py), checked as the ESP32 driver would take it."""
    if not 1 <= len(ssid.encode()) <= 32:
        raise ProvisionError("bad Wi-Fi SSID %r: 1 to 32 bytes" % ssid)
    if password is not None and not 8 <= len(password.encode()) <= 63:
        raise ProvisionError("the Wi-Fi password must be 8 to 63 characters (WPA2), or use --wifi-open")
    if hostname is not None and not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9-]{0,30}[A-Za-z0-9])?", hostname):
        raise ProvisionError("bad hostname %r: 1 to 32 of A-Z a-z 0-9 -, not starting or ending with -" % hostname)
    if country is not None and not re.fullmatch(r"[A-Z]{2}", country):
        raise ProvisionError("bad country %r: two capital letters, e.g. DE" % country)
    if ifconfig is not None:
        parts = ifconfig.split(",")
        try:
            if len(parts) != 4:
                raise ValueError
            for part in parts:
                ipaddress.IPv4Address(part)
        except ValueError:
            raise ProvisionError("bad --wifi-ifconfig %r: IP,NETMASK,GATEWAY,DNS" % ifconfig) from None
        ifconfig = parts
    return {"ssid": ssid, "password": password, "hostname": hostname, "country": country, "ifconfig": ifconfig}


def device_config(device_id, broker, *, board, fleet="default", group=None, tls_client=False, user=None,
                  password=None, server_hostname=None, wifi=None):
    """The `ota_config.json` content: every key the device reads, unset ones as null. `wifi`:
    a `wifi_config()`, or None when the application brings the network up itself."""
    config = copy.deepcopy(device_defaults())
    if not signing.BOARD_RE.match(board.encode()):
        raise ProvisionError("bad board id %r: 1 to 32 of A-Z a-z 0-9 . _ -" % board)
    host, port = parse_broker(broker)
    config.update(device_id=check_name("device id", device_id), board=board, fleet=check_name("fleet", fleet),
                  group=group and check_name("group", group))
    config["broker"] = {
        "host": host, "port": port, "tls": True, "ca": CA_FILE,
        "cert": CERT_FILE if tls_client else None, "key": KEY_FILE if tls_client else None,
        "server_hostname": server_hostname, "user": user, "password": password,
        "keepalive": config["broker"]["keepalive"],
    }
    config["wifi"] = wifi
    return config


INSTALLED_PATH = ".ota/installed"  # lib/ota/installed.py


def installed_record(firmware_version, label="ota_0"):
    """The device's record of what runs in `label` (lib/ota/installed.py), for the firmware a
    cable put there: official builds leave the app descriptor's version empty, so only the
    person flashing it knows. A state file as lib/ota/store.py writes it (JSON, CRC-32 trailer)."""
    data = json.dumps({label: [None, None, firmware_version]}).encode()
    return data + struct.pack("<I", zlib.crc32(data))


def _write_secret(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT


def stage(out, *, config, trust, credentials, arch, boot=ROOT / "boot.py", main=ROOT / "main.py",
          firmware_version=None, romfs=None):
    """Build `out` as the board's filesystem will be; returns the list of staged paths.

    `out` is rebuilt from nothing, so files from an earlier board (another device's key) never
    ride along; a folder that is not a staging folder is refused rather than emptied. With
    `romfs` (a file path), the package goes into that ROMFS image as /rom/lib/ota instead of
    the filesystem: bytecode a board runs in place from flash (docs/PROVISIONING.md)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / "ota_config.json").exists():
        raise ProvisionError("%s is not empty and not a staging folder: choose another --out" % out)
    sources = {"boot.py": _read(boot, "boot.py"), "main.py": _read(main, "main.py")}
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, mode=0o700)
    try:
        if romfs is None:
            mpy.build(arch, out / "lib" / "ota")
        else:
            with tempfile.TemporaryDirectory() as tree:
                mpy.build(arch, Path(tree) / "lib" / "ota")
                Path(romfs).write_bytes(romfs_image.image(tree))
    except mpy.BuildError as exc:
        raise ProvisionError(str(exc))
    (out / ".ota").mkdir()
    (out / "certs").mkdir()
    (out / signing.TRUST_PATH).write_bytes(trust)
    if firmware_version:
        (out / INSTALLED_PATH).write_bytes(installed_record(firmware_version))
    for name, data in sorted(credentials.items()):
        if name != KEY_FILE:  # the key is written once, owner-only from its first byte
            (out / name).write_bytes(data)
    if KEY_FILE in credentials:
        _write_secret(out / KEY_FILE, credentials[KEY_FILE])
    text = (json.dumps(config, indent=1, sort_keys=True) + "\n").encode()
    if config["broker"]["password"] is not None or (config.get("wifi") or {}).get("password") is not None:
        _write_secret(out / "ota_config.json", text)
    else:
        (out / "ota_config.json").write_bytes(text)
    for name, data in sources.items():
        (out / name).write_bytes(data)
    return sorted(p for p in out.rglob("*") if p.is_file())


def flash_commands(port, firmware, *, chip="esp32", baud=460800, erase=False):
    """esptool (v5 spelling) command lines that put MicroPython on the board."""
    if chip not in FLASH_OFFSETS:
        raise ProvisionError("unknown chip %r (one of: %s)" % (chip, ", ".join(sorted(FLASH_OFFSETS))))
    try:
        imagecheck.check_full_image(_read(firmware, "firmware"), FLASH_OFFSETS[chip], str(firmware))
    except imagecheck.ImageError as exc:
        raise ProvisionError(str(exc)) from None
    base = ["esptool", "--chip", chip, "--port", port, "--baud", str(baud)]
    commands = [base + ["erase-flash"]] if erase else []
    commands.append(base + ["write-flash", "-z", hex(FLASH_OFFSETS[chip]), str(firmware)])
    return commands


def deploy_commands(port, staging, tool="mpremote", romfs=None):
    """Command lines that copy the staging folder (and the `romfs` image) onto the board and
    reset it."""
    entries = [str(Path(staging) / name) for name in DEPLOY_ORDER if (Path(staging) / name).exists()]
    if tool == "mpremote":
        connect = ["mpremote", "connect", port]
        rom = [connect + ["romfs", "deploy", str(romfs)]] if romfs is not None else []
        return rom + [connect + ["exec", CLEAN_OLD_PACKAGE], connect + ["fs", "cp", "-r"] + entries + [":"],
                      connect + ["reset"]]
    if romfs is not None:
        raise ProvisionError("a romfs image is deployed with mpremote (--tool mpremote)")
    if tool == "ampy":
        ampy = ["ampy", "--port", port]
        return ([ampy + ["rmdir", "--missing-okay", "lib/ota"]]
                + [ampy + ["put", e, Path(e).name] for e in entries] + [ampy + ["reset", "--hard"]])
    raise ProvisionError("unknown deploy tool %r (mpremote or ampy)" % tool)


def quote(command):
    return " ".join(shlex.quote(part) for part in command)


def run(commands, echo=print):
    """Run each command in turn, the venv's tools first on PATH; stop at the first failure."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    for command in commands:
        echo(quote(command))
        try:
            code = subprocess.run(command, env=env).returncode
        except OSError as exc:
            raise CommandFailed(command, exc.strerror or exc)
        if code != 0:
            raise CommandFailed(command, code)
