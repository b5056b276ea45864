"""Freshness: the device's time and the timestamp records that keep a manifest current.

A timestamp record (docs/FORMAT.md section 5) rides after the manifest blob on each manifest
topic. It is signed by a key whose only role is `timestamp`, names the release current at one
targeting level and expires soon; the publisher refreshes it. A replayed old manifest, or one
pinned at a level whose record names another release, is refused, and so is everything once the
record has gone stale.

The device's time is the later of a set real-time clock and the newest `issued` it has accepted
plus the seconds counted since; that newest `issued` is stored, so time never goes back."""
import hashlib
import struct
import time
from binascii import hexlify

from micropython import const

from ota import events, p256, store
from ota.errors import FormatError, PolicyError, SignatureError
from ota.trust import TIMESTAMP

_NAME = "fresh"
_HEADER = ">4sBBH8sQQ8sIBBH"
_HEADER_SIZE = const(48)
_LEVEL_NAME_MAX = const(64)
_LIFE_MAX = const(31 * 86400)
RECORD_MAX = const(249)  # 48 + 2 * 64 + 1 + 72
_CLOCK_FLOOR = const(1735689600)  # 2025-01-01: a clock reading earlier was never set
_EPOCH_2000 = const(946684800)  # seconds from 1970 to 2000, for ports whose epoch is 2000


def rtc():
    """Seconds since 1970 from the real-time clock, or None when it was never set."""
    t = time.time()
    if time.gmtime(0)[0] == 2000:
        t += _EPOCH_2000
    return t if t >= _CLOCK_FLOOR else None


class Freshness:
    """The timestamp-record rules for one device: `keys` (timestamp keys among them switch the
    rules on), its `fleet`, `group` (or None) and `device` id."""

    def __init__(self, keys, fleet, group, device, clock=rtc):
        self.keys = keys
        self.names = ((fleet, ""), (fleet, group or ""), (fleet, device))
        self.clock = clock
        saved = store.read_json(_NAME, None)
        issued = [0, 0, 0]
        if isinstance(saved, list) and len(saved) == 3 and all(isinstance(x, int) and x >= 0 for x in saved):
            issued = saved  # a valid file; anything else starts from zero: expiry still holds
        self.issued = issued
        self.expires = [0, 0, 0]  # of the last record accepted per level, for `watch()`
        self._told = False  # `stale` reported for the records as they are
        self._base = max(issued)  # newest accepted `issued`
        self._at = time.ticks_ms()  # when _base was last brought up to date

    @property
    def required(self):
        """True when the trust file holds a timestamp key: every manifest needs a record."""
        return any(k.roles & TIMESTAMP for k in self.keys)

    def now(self):
        """The device's time (seconds since 1970), or None when it has none."""
        if self._base:
            # Fold elapsed ticks into the base, so ticks_ms wrapping never loses time.
            seconds = time.ticks_diff(time.ticks_ms(), self._at) // 1000
            self._base += seconds
            self._at = time.ticks_add(self._at, seconds * 1000)
        t = self.clock() if self.clock else None
        if t is None:
            return self._base or None
        return max(t, self._base)

    def watch(self):
        """Report `stale` once when an accepted record has expired and no fresh one came: the
        publisher stopped vouching, or someone withholds the records (a freeze). Call it often:
        it also keeps the time learnt from records moving."""
        now = self.now()
        if self._told or now is None:
            return
        for level in range(3):
            if 0 < self.expires[level] <= now:
                self._told = True
                events.emit("stale", level=("fleet", "group", "device")[level], expired=self.expires[level])
                return

    def check(self, record, blob, tick=None):
        """Check the timestamp `record` for the manifest `blob`; returns the device's time.
        Raises FormatError, SignatureError or PolicyError (`no_timestamp`, `wrong_level`,
        `replayed`, `stale`, `mismatch`) as docs/FORMAT.md section 5 says."""
        n = len(record)
        if not n:
            raise PolicyError("no_timestamp", "freshness is on and the manifest has no timestamp record")
        if n < _HEADER_SIZE + 2 + 8 or n > RECORD_MAX or bytes(record[:4]) != b"MOTS" or record[4] != 1:
            raise FormatError("bad_format", "no timestamp record")
        rlen = record[6] << 8 | record[7]
        if rlen < _HEADER_SIZE + 1 or rlen + 1 >= n or n != rlen + 1 + record[rlen]:
            raise FormatError("bad_format", "timestamp record lengths")
        mv = memoryview(record)
        from ota.manifest import find_key

        key = find_key(self.keys, hexlify(mv[8:16]).decode(), TIMESTAMP)  # type: ignore[arg-type]  # stub: bytes only
        if not p256.verify(hashlib.sha256(mv[:rlen]).digest(), mv[rlen + 1:], key, tick):
            raise SignatureError("bad_signature", key.id)
        _, _, level, _, _, issued, expires, release, counter, flen, nlen, reserved = struct.unpack_from(_HEADER, record)
        if (reserved or level > 2 or rlen != _HEADER_SIZE + flen + nlen or not 1 <= flen <= _LEVEL_NAME_MAX
                or nlen > _LEVEL_NAME_MAX or (level == 0) != (nlen == 0) or not 0 < issued < expires <= issued + _LIFE_MAX):
            raise FormatError("bad_format", "timestamp record fields")
        fleet = bytes(mv[_HEADER_SIZE:_HEADER_SIZE + flen])
        name = bytes(mv[_HEADER_SIZE + flen:rlen])
        mine = self.names[level]
        if fleet != mine[0].encode() or name != mine[1].encode():
            raise PolicyError("wrong_level", "record for another level")
        if issued < self.issued[level]:
            raise PolicyError("replayed", "issued %d < %d" % (issued, self.issued[level]))
        tbs_len = blob[6] << 8 | blob[7]
        if release != hashlib.sha256(memoryview(blob)[:tbs_len]).digest()[:8] or counter != struct.unpack_from(">I", blob, 20)[0]:
            raise PolicyError("mismatch", "record names another release")
        now = self.now()
        if now is not None and now >= expires:
            raise PolicyError("stale", "timestamp expired at %d" % expires)
        self.expires[level] = expires
        self._told = False
        if issued > self.issued[level]:
            self.issued[level] = issued
            store.write_json(_NAME, self.issued)
            if issued > self._base:
                self._base, self._at = issued, time.ticks_ms()
        return self.now()
