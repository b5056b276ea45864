"""Simulated Pico W boards for tests (the rp2 simulator, boards/unix/rp2host), and boards of
either kind set up for app bundles: the base `lib/ota`, the project's boot.py, the bundle
launcher as main.py, a first bundle installed at provisioning, and a signing key they trust."""
import json
import re
import sys
from pathlib import Path

import pytest

from mpunix import ROOT, install_mpy
from plugin_sim import SimDevice
from releases import Signer
from mpota import bundle, signing

sys.path.insert(0, str(ROOT / "boards" / "unix"))
from rp2host import board as rp2board, fs as rp2fs  # noqa: E402

BOOT = re.compile(r"^\[sim\] boot (\d+) cause=(\S+)$", re.M)
EVENT = re.compile(r"^EVENT (\S+) (.*)$", re.M)
RP2_BOARD = "rp2-pico-w"
LAUNCHER = (ROOT / "boards" / "rp2" / "main.py").read_text()
BUNDLE_APP = (ROOT / "tests" / "host" / "apps" / "bundle_app.py").read_text()
TABLE_FEED = (ROOT / "tests" / "host" / "apps" / "table_feed.py").read_text()  # bundle_app.py's helper
BUNDLE_MQTT_APP = (ROOT / "tests" / "host" / "apps" / "bundle_mqtt_app.py").read_text()


class Rp2Device(SimDevice):
    """One simulated Pico W: its storage file, run by the rp2 supervisor (`mpota sim rp2-run`)."""

    def __init__(self, root, files=None, heapsize="256K"):  # noqa: super().__init__ makes an ESP32
        self.root = Path(root)
        self.flash = self.root / "flash.bin"
        self.heapsize = heapsize
        self.console = ""
        self.proc = None
        self.returncode = None
        self._reader = None
        self.cut_at = None
        self.stop_at_idle = False
        rp2board.new_board(self.flash)
        if files:
            self.write_files(files)

    def write_files(self, files):
        rp2fs.write_files(self.flash, files)

    def read_files(self):
        return rp2fs.read_files(self.flash)

    def install_lib(self, arch=None):
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            install_mpy(tmp, arch)
            rp2fs.copy_tree(self.flash, tmp, "lib")

    def _command(self, halt_on_idle, max_boots, timeout):
        cmd = [sys.executable, "-m", "mpota.rp2sim", "rp2-run", "--flash", str(self.flash), "--heapsize", self.heapsize]
        if halt_on_idle:
            cmd.append("--halt-on-idle")
        if max_boots is not None:
            cmd += ["--max-boots", str(max_boots)]
        if timeout is not None:
            cmd += ["--timeout", str(timeout)]
        if self.stop_at_idle:
            cmd.append("--stop-at-idle")
        if self.cut_at is not None:
            cmd += ["--cut-at", str(self.cut_at)]
        return cmd

    def boot_log(self):
        return [{"n": int(n), "cause": cause} for n, cause in BOOT.findall(self.console)]

    def wdt_record(self):
        return json.loads(Path(str(self.flash) + ".wdt.json").read_text())


def events(text):
    """(kind, fields) of every complete EVENT line."""
    out = []
    for kind, fields in EVENT.findall(text):
        try:
            out.append((kind, json.loads(fields)))
        except ValueError:
            pass
    return out


def app_bundle(version, behaviour, extra=None, main=BUNDLE_APP):
    """The files of a test application bundle: main.py (by default one that applies a staged
    release) confirms a trial once `behaviour.healthy()` (a module of the bundle) says so."""
    files = {"main.py": main.encode(), "behaviour.py": behaviour.encode(), "table_feed.py": TABLE_FEED.encode(),
             "version.txt": version.encode()}
    files.update({k: v.encode() if isinstance(v, str) else v for k, v in (extra or {}).items()})
    return bundle.pack(files)


class BundleSigner(Signer):
    def bundle(self, version, behaviour, *, counter, board=RP2_BOARD, chunk_size=1024, extra=None, main=BUNDLE_APP):
        """(manifest blob, bundle bytes) of a signed app bundle."""
        return self.release_of(app_bundle(version, behaviour, extra, main), version=version, counter=counter,
                               chunk_size=chunk_size, board=board, target="bundle")


def bundle_board_files(signer, first, *, board=RP2_BOARD, wdt_ms=3000, confirm_within_ms=6000, app=None, config=None):
    """A board's filesystem for app bundles, with bundle `first` (from `signer.bundle`)
    installed and confirmed in apps/a; `config`: more settings for ota_config.json."""
    blob, data = first
    fields = signing.verify(blob, signer.key.public_key())
    files = bundle.installed_files(data, release=signing.manifest_id(blob), version=fields["version"],
                                   counter=fields["counter"])
    files.update({
        "boot.py": (ROOT / "boot.py").read_bytes(),
        "main.py": LAUNCHER.encode(),
        "app.json": json.dumps(app or {}).encode(),
        "ota_config.json": json.dumps(dict({"board": board, "wdt_ms": wdt_ms, "confirm_within_ms": confirm_within_ms},
                                           **(config or {}))).encode(),
        ".ota/trust.bin": signer.trust.read_bytes(),
    })
    return files


def staged(folder, blob, data):
    """A release as the test application finds it in `folder`: the manifest, the payload and its
    digest table as the device keeps it (index, then every chunk's digest)."""
    fields = signing.parse_blob(blob)[2]
    table = b"".join(signing.chunk_messages(fields, data)[fields["chunk_count"]:])
    return {folder + "/manifest.bin": blob, folder + "/payload.bin": data, folder + "/table.bin": table}


def stage(device, blob, data):
    """Put a release where the test application picks it up."""
    device.write_files(staged("release", blob, data))


@pytest.fixture
def rp2_device(tmp_path):
    """Factory: `rp2_device(files=None, heapsize="256K") -> Rp2Device`; boards still running at
    the end of the test are powered off."""
    made = []

    def make(files=None, heapsize="256K"):
        device = Rp2Device(tmp_path / ("pico%d" % len(made)), files, heapsize)
        made.append(device)
        return device

    yield make
    for device in made:
        device.power_cut()


def bundle_record(device):
    """The board's bundle record (.ota/bundle), decoded."""
    raw = device.read_files()[".ota/bundle"]
    return json.loads(raw[:-4])


def history(files):
    """The anti-downgrade record as the device reads it (lib/ota/history.py): the newest of its
    two copies, with the highest counter of both."""
    copies = [json.loads(files[name][:-4]) for name in (".ota/history.0", ".ota/history.1") if name in files]
    if not copies:
        return {"counter": 0, "release": None, "failed": []}
    newest = max(copies, key=lambda h: h.get("seq", 0))
    return dict(newest, counter=max(h["counter"] for h in copies))
