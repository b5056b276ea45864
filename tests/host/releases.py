"""Signed releases for tests: a real key, a real trust file, a real firmware image."""
import hashlib
from pathlib import Path

from tools import fwimage, signing

BOARD = "esp32-generic"
SLOT_SIZE = 0x180000


class Signer:
    """A signing key and the trust file a device needs to accept its releases."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.key = signing.generate_key()
        self.trust = self.folder / "trust.bin"
        signing.write_trust_file([self.key.public_key()], self.trust)

    def release(self, version, modules, *, counter=1, size=None, chunk_size=4096, board=BOARD, expiry=None):
        """(manifest blob, image bytes) for a firmware built from `modules`."""
        image = fwimage.build_image(version, modules, size=size)
        tbs = signing.build_manifest(image, board=board, version=version, counter=counter, chunk_size=chunk_size,
                                     key_id=self.key.public_key(), expiry=expiry)
        return signing.sign(tbs, self.key), image


def release_id(blob):
    return signing.manifest_id(blob)


def digest(data):
    return hashlib.sha256(data).hexdigest()
