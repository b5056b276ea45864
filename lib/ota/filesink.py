"""A target that is a file (a trust update): the same `write` and `sha256` as `ota.slot.Slot`."""
import hashlib


class FileSink:
    def __init__(self, path):
        self.path = path  # created at its full size by the updater before the first chunk

    def write(self, offset, data):
        with open(self.path, "r+b") as f:
            f.seek(offset)
            f.write(data)

    def sha256(self, length, buf, tick=None):
        """SHA-256 of the first `length` bytes as they are in the file."""
        h = hashlib.sha256()
        view = memoryview(buf)
        with open(self.path, "rb") as f:
            while length > 0:
                n = f.readinto(view[:min(len(buf), length)])
                if not n:
                    break
                h.update(view[:n])
                length -= n
                if tick:
                    tick()
        return h.digest()
