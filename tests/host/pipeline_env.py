"""A simulated board set up for the install pipeline: old firmware v1 in ota_0, the ota package,
boot.py, a main.py that applies a release found on its filesystem, and a signing key it trusts."""
import json
import re

from mpunix import ROOT, install_mpy
from mpota import signing
from releases import Signer
from mpota.provision import INSTALLED_PATH, installed_record
from mpota.fwimage import FW_HEALTHY, FW_UNHEALTHY  # noqa: F401  (re-exported for the tests)

FW_HANGS = "def start():\n    while True:\n        pass\n\ndef healthy():\n    return True\n"
FW_CRASHES = "def start():\n    raise RuntimeError('firmware bug')\n\ndef healthy():\n    return True\n"
FW_NEVER_CONFIRMS = (
    "import time, ota\n\ndef start():\n    while True:\n        ota.feed()\n        time.sleep_ms(20)\n\n"
    "def healthy():\n    return True\n"
)
FW_WARMS_UP = (
    "calls = [0]\n\ndef start():\n    pass\n\n"
    "def healthy():\n    calls[0] += 1\n    return True if calls[0] > 5 else None\n"
)
FW_NEVER_SURE = "def start():\n    pass\n\ndef healthy():\n    return None\n"
EVENT = re.compile(r"^EVENT (\S+) (.*)$", re.M)


class PipelineBoard:
    def __init__(self, sim_device, signer, *, wdt_ms=2000, confirm_within_ms=60000, app=None, heapsize="168K"):
        self.signer = signer
        old = signer.release("1.0.0", {"fw": FW_HEALTHY})[1]
        self.device = sim_device(old, heapsize=heapsize)
        install_mpy(self.device.fs / "lib")
        self.device.write_files({
            "boot.py": (ROOT / "boot.py").read_text(),
            "main.py": (ROOT / "tests/host/apps/local_update.py").read_text(),
            "table_feed.py": (ROOT / "tests/host/apps/table_feed.py").read_text(),
            "app.json": json.dumps(app or {"seed": 1, "duplicates": 50}),
            "ota_config.json": json.dumps({"wdt_ms": wdt_ms, "confirm_within_ms": confirm_within_ms}),
            ".ota/trust.bin": signer.trust.read_bytes(),
            INSTALLED_PATH: installed_record("1.0.0"),  # as `mpota provision --firmware-version` writes it
        })

    def stage(self, blob, image, signed_image=None, *, variants=(), base=None, chunks=None):
        """Offer a release from outside the board (its filesystem is too small for a full slot),
        where main.py picks it up: its manifest
        message, and per manifest id its payload chunk messages and its digest table as the
        device keeps it (index, then every chunk's digest). `signed_image`: the image the table
        is made from, when `image` is a tampered copy; `variants`: delta blobs appended to the
        message, made against `base`; `chunks`: the release's payload chunk messages, when its
        manifest was built with supplied chunks (signing.build_manifest)."""
        files = {"release/manifest.bin": blob + b"".join(variants)}
        for i, one in enumerate((blob,) + tuple(variants)):
            fields = signing.parse_blob(one)[2]
            try:
                messages = signing.chunk_messages(fields, signed_image or image, base if fields["base_size"] else None,
                                                  chunks if i == 0 else None)
            except signing.FormatError:
                continue  # a variant of another image: no device may take it, so it has no chunks here
            n = fields["chunk_count"]
            sent = messages[:n]
            if i == 0 and fields["encoding"] == "raw" and signed_image:
                sent = [image[k:k + fields["chunk_size"]] for k in range(0, len(image), fields["chunk_size"])]
            ends = [sum(len(c) for c in sent[:k + 1]) for k in range(n)]
            files.update({"release/%s.chunks" % fields["id"]: b"".join(sent),
                          "release/%s.ends" % fields["id"]: b"".join(e.to_bytes(4, "big") for e in [0] + ends),
                          "release/%s.table" % fields["id"]: b"".join(messages[n:])})
        self.device.share_files(files)

    def events(self, text=None):
        """(kind, fields) of every complete EVENT line (a power cut can leave the last one torn)."""
        out = []
        for kind, fields in EVENT.findall(self.device.console if text is None else text):
            try:
                out.append((kind, json.loads(fields)))
            except ValueError:
                pass
        return out

    def kinds(self):
        return [kind for kind, _ in self.events()]


def new_signer(tmp_path):
    return Signer(tmp_path / "keys")
