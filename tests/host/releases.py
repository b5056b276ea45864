"""Signed releases for tests: a real key, a real trust file, a real firmware image."""
import hashlib
from pathlib import Path

from mpota import fwimage, signing

BOARD = "esp32-generic"
SLOT_SIZE = 0x180000


class Signer:
    """A signing key and the trust file a device needs to accept its releases."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.key = signing.generate_key()
        self.stamp_key = None
        self.trust = self.folder / "trust.bin"
        signing.write_trust_file([self.key.public_key()], self.trust)

    def add_timestamp_key(self):
        """Trust an online timestamp key too: devices then require fresh timestamp records.
        Returns the PEM file of its private key (unencrypted, as an online key's would be)."""
        self.stamp_key = signing.generate_key()
        signing.write_trust_file([self.key.public_key(), self.stamp_key.public_key()], self.trust,
                                 roles=[signing.ROLE_RELEASE | signing.ROLE_TRUST, signing.ROLE_TIMESTAMP])
        pem = self.folder / "timestamp.pem"
        pem.write_bytes(signing.private_key_pem(self.stamp_key, None))
        return pem

    def release(self, version, modules, *, counter=1, size=None, chunk_size=4096, board=BOARD, expiry=None):
        """(manifest blob, image bytes) for a firmware built from `modules`."""
        image = fwimage.build_image(version, modules, size=size)
        return self.release_of(image, version=version, counter=counter, chunk_size=chunk_size, board=board,
                               expiry=expiry)

    def release_of(self, payload, *, version="1.0.0", counter=1, chunk_size=4096, board=BOARD, expiry=None,
                   target="firmware", encoding="raw", base=None, chunks=None):
        """(manifest blob, payload) signed for any payload (an image, a trust file); `encoding`
        deflate or delta (against `base`) for an encoded release of it; `chunks`: its payload
        chunk messages when they are made elsewhere (signing.build_manifest)."""
        tbs = signing.build_manifest(payload, board=board, version=version, counter=counter, chunk_size=chunk_size,
                                     key_id=self.key.public_key(), expiry=expiry, target=target, encoding=encoding,
                                     base=base, chunks=chunks)
        return signing.sign(tbs, self.key), payload


def release_id(blob):
    return signing.manifest_id(blob)


def digest(data):
    return hashlib.sha256(data).hexdigest()
