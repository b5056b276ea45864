"""The download's progress record: which release, which slot sectors are erased, which chunks
are in flash. Saved with `store` (old or new after a power cut, never torn).

Invariant that makes resuming safe: a chunk is marked received only in a record that also marks
its sectors erased. A chunk written but not yet recorded is simply written again: NOR writes of
the same bytes over themselves change nothing."""
import struct

from ota import store

_NAME = store.PROGRESS
_MAGIC = b"OTP1"
_HEADER = "<4s8sIHH"  # magic, release id, security counter, chunk count, sector count
_HEADER_SIZE = struct.calcsize(_HEADER)


def _bitmap(count):
    return bytearray((count + 7) // 8)


def test_bit(bitmap, index):
    return bitmap[index >> 3] & (1 << (index & 7))


def set_bit(bitmap, index):
    bitmap[index >> 3] |= 1 << (index & 7)


class Progress:
    """Bitmaps of erased sectors and received chunks for one release."""

    def __init__(self, release, counter, chunk_count, sector_count):
        self.release = release  # 16 hex chars
        self.counter = counter
        self.chunk_count = chunk_count
        self.sector_count = sector_count
        self.erased = _bitmap(sector_count)
        self.received = _bitmap(chunk_count)
        self.count = 0  # chunks received: kept up to date by mark(), so no per-chunk recount
        self._low = 0  # no chunk below this index is missing

    def complete(self):
        return self.count == self.chunk_count

    def mark(self, index):
        """Record chunk `index`, not marked yet, as in flash."""
        set_bit(self.received, index)
        self.count += 1

    def missing(self, limit):
        """The lowest `limit` chunk indices still missing."""
        out: list = []
        for i in range(self._low, self.chunk_count):
            if not test_bit(self.received, i):
                if not out:
                    self._low = i
                out.append(i)
                if len(out) >= limit:
                    break
        return out

    def save(self):
        head = struct.pack(_HEADER, _MAGIC, bytes.fromhex(self.release), self.counter, self.chunk_count, self.sector_count)
        store.write(_NAME, head + self.erased + self.received)

    def fits(self, counter, chunk_count, sector_count):
        """True when this record was made for a release of this shape (a record whose CRC is
        right but whose numbers are not must never steer the writes into the slot)."""
        return self.counter == counter and self.chunk_count == chunk_count and self.sector_count == sector_count

    @classmethod
    def load(cls):
        """The saved record, or None when there is none. A record that cannot be trusted (torn,
        or whole but malformed) is reported and dropped: the download starts again."""
        if not store.present(_NAME):
            return None
        data = store.read(_NAME)
        self = cls._parse(data) if data is not None else None
        if self is None:
            store.drop(_NAME, "bad_progress")
        return self

    @classmethod
    def _parse(cls, data):
        if len(data) < _HEADER_SIZE:
            return None
        magic, release, counter, chunks, sectors = struct.unpack(_HEADER, data[:_HEADER_SIZE])
        if magic != _MAGIC or not chunks or not sectors:
            return None
        self = cls(release.hex(), counter, chunks, sectors)
        if len(data) != _HEADER_SIZE + len(self.erased) + len(self.received):
            return None
        self.erased[:] = data[_HEADER_SIZE : _HEADER_SIZE + len(self.erased)]
        self.received[:] = data[_HEADER_SIZE + len(self.erased) :]
        self.count = sum(1 for i in range(chunks) if test_bit(self.received, i))
        return self

    @staticmethod
    def clear():
        store.remove(_NAME)
