"""The inactive firmware slot: written in place, chunk by chunk, in any order.

Sectors are erased just ahead of the first chunk that lands in them (4-argument writeblocks
never erases), so a chunk size that does not divide 4096 works and nothing is erased twice.
Every buffer is allocated once."""
import hashlib

from micropython import const

from ota.progress import set_bit, test_bit

SECTOR = const(4096)
_APP_DESC_VERSION = const(48)  # image header 24 + segment header 8 + offset 16 in esp_app_desc_t
_VERSION_LEN = const(32)


class Slot:
    def __init__(self, part, progress):
        self.part = part
        self.progress = progress
        self.size = part.info()[3]

    def write(self, offset, data):
        """Write `data` at `offset`, erasing the sectors it touches that are still unerased."""
        erased = self.progress.erased
        for sector in range(offset // SECTOR, (offset + len(data) - 1) // SECTOR + 1):
            if not test_bit(erased, sector):
                self.part.ioctl(6, sector)
                set_bit(erased, sector)
        self.part.writeblocks(offset // SECTOR, data, offset % SECTOR)

    def sha256(self, length, buf, tick=None):
        """SHA-256 of the first `length` bytes as they are in flash (not as they were received)."""
        h = hashlib.sha256()
        view = memoryview(buf)
        done = 0
        while done < length:
            n = min(len(buf), length - done)
            self.part.readblocks(done // SECTOR, view[:n], done % SECTOR)
            h.update(view[:n])
            done += n
            if tick:
                tick()
        return h.digest()


def app_version(part):
    """The version string in the app descriptor of the image in `part` (None if not an image)."""
    buf = bytearray(_APP_DESC_VERSION + _VERSION_LEN)
    part.readblocks(0, buf)
    if buf[0] != 0xE9 or buf[32:36] != b"\x32\x54\xcd\xab":
        return None
    raw = bytes(buf[_APP_DESC_VERSION:])
    end = raw.find(b"\x00")
    return (raw if end < 0 else raw[:end]).decode()
