"""The inactive firmware slot: written in place, chunk by chunk, in any order.

Sectors are erased just ahead of the first chunk that lands in them (4-argument writeblocks
never erases), so a chunk size that does not divide 4096 works and nothing is erased twice.
Every buffer is allocated once."""
import hashlib

from micropython import const

from ota.progress import set_bit, test_bit

SECTOR = const(4096)


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
