"""The updater core: one signed release from offer to reboot, whatever the transport.

    u = Updater(keys, board="esp32-generic")
    m = u.offer(manifest_blob)          # verified, or a typed OTAError; None: nothing to do
    for i in u.missing(4): u.write_chunk(i, data_of_chunk_i)   # any order, duplicates fine
    if u.complete(): u.finish(); u.install()   # install() returns False until permitted

It writes only the inactive slot; nothing becomes bootable until the bytes in flash match the
signed digest, and the reboot waits for the application's permission (`ota.policy`).

Every chunk is checked against the digest table the manifest commits to (docs/FORMAT.md
section 3) before a byte of it is written: the table arrives as extra chunks (index, then
pages), is checked against the signed root and kept in `.ota/table`, read one digest at a time.
A trust update (target `trust`) is written to `.ota/trust.new` the same way and replaces the
trust file in place, without a reboot.

Deflate and delta releases (docs/FORMAT.md section 4): each verified chunk is decoded into one
preallocated piece and that piece is written. A manifest message may carry delta variants of its
release after the timestamp record; the device takes the one made against the image it runs
(its running slot hashed once per base size) and the full release otherwise."""

import hashlib
import os
import time

import machine
from micropython import const

from ota import events, history, manifest, otadata, store, trial, trust
from ota.errors import FormatError, IntegrityError, OTAError, PolicyError, StateError
from ota.policy import now as install_now
from ota.progress import Progress, test_bit
from ota.slot import SECTOR, Slot

try:
    import esp32
except ImportError:  # rp2: no firmware slot; app bundles only (ota.bundle)
    esp32 = None  # type: ignore[assignment]

_SLACK = const(64)  # an encoded chunk is at most chunk size + 64 bytes (docs/FORMAT.md section 4)
_SAVE_BYTES = const(65536)  # received bytes between progress saves: what a power cut can cost again
_COOLDOWN_MS = const(2000)  # a refused message is not asked for again before this, doubled per refusal
_COOLDOWN_SHIFT_MAX = const(6)  # at most about 2 minutes
_COOLDOWN_SLOTS = const(8)  # refused indices remembered: constant RAM whatever the chunk count
_TRUST_MAX = const(147056)  # the largest trust file: 8 keys, 8 teeth
TABLE = store.STATE_DIR + "/table"  # the verified digest table of the download in progress
TRUST_NEW = store.STATE_DIR + "/trust.new"
_VARIANTS_MAX = const(4)  # delta variants a manifest message may carry after the release's own blob


class Updater:
    def __init__(self, keys, board, permission=install_now, clock=None, tick=None, fresh=None,
                 trust_path=trust.TRUST_FILE, buf=None):
        self.keys = keys  # a list: a trust update replaces its content in place
        self.board = board
        self.fresh = fresh  # an `ota.freshness.Freshness`: timestamp records are required when it says so
        self.trust_path = trust_path
        self.permission = permission  # callable: may the device switch and reboot now?
        self.clock = clock  # seconds since 1970 when the device has a trusted clock
        self.tick = tick  # called during long work, e.g. to feed a watchdog
        self.version = trial.running()[1]  # from the signed manifest it was installed with
        self.running = self.target = None
        if esp32:
            self.running = esp32.Partition(esp32.Partition.RUNNING)  # type: ignore[arg-type]  # stub: label only; RUNNING works
            self.target = self.running.get_next_update()
        self.manifest = None
        self.progress = None
        self.slot = None
        self._blob = None
        self._verified = False
        self._asked = False
        self._unsaved = 0  # bytes of chunks received since the progress was last saved
        self._percent = -1
        # for hashing the slot and decoding: `buf` (SECTOR bytes) lets the caller allocate it
        # before the heap is fragmented
        self._buf = buf or bytearray(SECTOR)
        self._cooling: dict = {}  # index -> (refusals, ticks_ms when it may be asked again)
        self._base = (0, None)  # (base size, SHA-256 of that much of the running slot): hashed once
        self._decoder = None  # an ota.encoding.Decoder for deflate and delta releases
        self._skipped = None  # why a delta variant of the offered release was not taken

    def _check(self, message):
        """The Manifest to download for a manifest topic's `message`: the release's own blob,
        its timestamp record when there is one, then delta variants (docs/FORMAT.md section 1)."""
        blob, record, variants = _split(message)
        m, floor, capacity, now = self._check_blob(blob, record)
        self._skipped = None
        for variant in variants:
            try:
                d = self._variant(m, variant, floor, capacity, now)
                self._skipped = None
                return d
            except OTAError as exc:
                self._skipped = exc.reason
        if m.encoding == "delta":
            self._check_base(m.base_size, m.base_digest)
        return m

    def _variant(self, full, blob, floor, capacity, now):
        """`blob` as the delta of release `full` made against the running image, or an OTAError.
        The cheap checks come first: most devices of a fleet run another base than the delta's."""
        if len(blob) < 148 or blob[16] != 2 or bytes(blob[48:80]) != full.digest:
            raise FormatError("bad_format", "not a delta of this release")
        self._check_base(int.from_bytes(blob[112:116], "big"), bytes(blob[116:148]))
        d = manifest.check(blob, self.keys, self.board, floor, capacity, now, self.tick)
        if (d.encoding != "delta" or d.target != full.target or d.digest != full.digest or d.size != full.size
                or d.counter != full.counter or d.version != full.version):
            raise FormatError("bad_format", "not a delta of this release")
        d.release = full.id
        return d

    def _check_base(self, size, digest):
        """Refuse a delta whose base (`size` bytes with SHA-256 `digest`) is not the start of the
        running slot. The slot is hashed once per size: the running image cannot change."""
        if self.running is None or not 0 < size <= self.running.info()[3]:
            raise PolicyError("wrong_base", "the base does not fit the running slot")
        if self._base[0] != size:
            self._base = (size, Slot(self.running, None).sha256(size, self._buf, self.tick))
        if self._base[1] != digest:
            raise PolicyError("wrong_base", "this device does not run the patch's base image")

    def _check_blob(self, blob, record):
        """(the release's Manifest, counter floor, capacity, time) for its blob and record."""
        now = self.clock() if self.clock else None
        if self.fresh and self.fresh.required:
            now = self.fresh.check(record, blob, self.tick)
        if blob[5] == 3:  # a trust update: its floor is the serial of the trust file in use
            floor, capacity = self._trust_serial(), _TRUST_MAX
        elif blob[5] == 2:  # an app bundle: its own floor, the filesystem's room
            from ota.bundle import limits

            floor, capacity = limits(int.from_bytes(blob[28:32], "big"))  # chunk size: checked next
        else:
            floor, capacity = history.load()["counter"], self.target.info()[3] if self.target else 0
        m = manifest.check(blob, self.keys, self.board, floor, capacity, now, self.tick)
        if m.encoding != "raw" and (m.target == "trust" or m.encoding == "delta" and m.target != "firmware"):
            # a bundle may travel deflated (its sink takes decoded pieces like a slot); a delta
            # patches the running firmware only
            raise FormatError("unsupported", "%s %s: no sink for it on this device" % (m.target, m.encoding))
        return m, floor, capacity, now

    def _trust_serial(self):
        return trust.read(self.trust_path).serial

    @property
    def verified(self):
        """True once `finish()` has checked the slot: `install()` may be called."""
        return self._verified

    def offer(self, blob):
        """Verify a manifest message (the blob, then its timestamp record when freshness is on)
        and start (or resume) its download. Returns the Manifest, or None when there is nothing
        to do (the release runs already, or it rolled back before)."""
        bundles = trial.bundle_trials()
        if trial.in_trial() or otadata.running_state() == otadata.PENDING_VERIFY or (bundles and bundles.on_trial()):
            raise StateError("unconfirmed", "the running image is on trial")
        try:
            m = self._check(blob)
        except MemoryError:
            raise  # not the release's fault: the service reports it (fault, no_memory) and tries again
        except Exception as exc:
            events.emit("rejected", reason=getattr(exc, "reason", "bad_format"))
            raise
        past = history.load()
        if m.release == past["release"] or m.release in past["failed"] or (bundles and m.release == bundles.running_release()):
            return None
        if m.target == "trust" and m.counter == self._trust_serial():
            return None  # this trust file is the one in use
        current = self.manifest
        if current and current.id == m.id:
            self._blob = blob  # the same release with a newer timestamp record: finish() checks that one
            return current
        if current and (self._verified or m.counter < current.counter):
            events.emit("rejected", release=m.release, reason="busy")
            raise StateError("busy", "another update is in progress")
        signed = bytes(blob[:manifest.blob_length(blob)])  # without the timestamp record, refreshed often
        saved = Progress.load()
        count, sectors = m.chunk_count + 1 + m.pages, (m.size + SECTOR - 1) // SECTOR
        if saved and saved.release == m.id and saved.fits(m.counter, count, sectors) \
                and store.read(store.MANIFEST) == signed:
            progress = saved
        elif saved and m.counter < saved.counter and self._resumable(saved):
            events.emit("rejected", release=m.release, reason="busy")
            raise StateError("busy", "a newer download is in progress")
        else:
            progress = Progress(m.id, m.counter, count, sectors)
            store.write(store.MANIFEST, signed)
            _create(TABLE, 32 * (m.pages + m.chunk_count))
            if m.target == "trust":
                _create(TRUST_NEW, m.size)
            progress.save()
        self.manifest, self.progress, self._blob = m, progress, blob
        if m.target == "bundle":
            from ota.bundle import Sink  # loaded only for a bundle: the sink and its table parser

            self.slot = Sink(m, progress, self.tick)
        elif m.target == "trust":
            from ota.filesink import FileSink  # loaded only for a trust update

            self.slot = FileSink(TRUST_NEW)
        else:
            self.slot = Slot(self.target, progress)
        self._decoder = self._new_decoder(m)
        self._verified = self._asked = False
        self._unsaved = 0
        fields = {"release": m.release, "target": m.version, "resumed": progress.count, "progress": _percent(progress),
                  "encoding": m.encoding, "wire": m.wire_size}
        if self._skipped:
            fields["delta"] = self._skipped  # a delta was published and not taken, and why
        events.emit("offered", **fields)
        return m

    def _resumable(self, saved):
        """True when the saved progress belongs to the saved manifest, which offer() checked
        before writing it: a damaged record that names no saved release cannot hold offers off.
        (No second signature check: it would cost a verify and move the freshness state.)"""
        blob = store.read(store.MANIFEST)
        try:
            end = manifest.blob_length(blob or b"")
        except OTAError:
            return False
        tbs_len = blob[6] << 8 | blob[7]
        return end <= len(blob) and hashlib.sha256(blob[:tbs_len]).digest()[:8].hex() == saved.release

    def missing(self, limit):
        """Up to `limit` chunk indices to fetch: the table's index first, then its pages, then
        payload chunks (a chunk can only be checked once its page is in)."""
        m, p = self.manifest, self.progress
        if m is None or p is None:
            return []
        n = m.chunk_count
        if not test_bit(p.received, n):
            return [] if self._cool(n) else [n]
        pages = [i for i in range(n + 1, n + 1 + m.pages) if not test_bit(p.received, i)]
        if pages:
            return [i for i in pages if not self._cool(i)][:limit]
        return [i for i in p.missing(limit + len(self._cooling)) if not self._cool(i)][:limit]

    def _cool(self, index):
        """True while `index` was refused too recently to ask the broker for it again: a bad
        retained message would otherwise be fetched in a hot loop."""
        entry = self._cooling.get(index)
        if entry and time.ticks_diff(entry[1], time.ticks_ms()) > 0:
            return True
        return False

    def _refused(self, index):
        count = self._cooling.pop(index, (0, 0))[0] + 1
        if len(self._cooling) >= _COOLDOWN_SLOTS:
            self._cooling.pop(next(iter(self._cooling)))
        delay = _COOLDOWN_MS << min(count - 1, _COOLDOWN_SHIFT_MAX)
        self._cooling[index] = (count, time.ticks_add(time.ticks_ms(), delay))

    def complete(self):
        return self.progress is not None and self.progress.complete()

    def write_chunk(self, index, data):
        """Check chunk `index` against the digest table, then write it. Returns False for a chunk
        already in flash; a chunk that fails its check is not written (typed OTAError)."""
        m, p, slot = self.manifest, self.progress, self.slot
        if m is None or p is None or slot is None:
            raise StateError("no_offer", "no manifest offered")
        n = m.chunk_count
        if not 0 <= index < n + 1 + m.pages:
            raise FormatError("bad_chunk", "index out of range")
        if test_bit(p.received, index):
            return False
        try:
            if index >= n:
                self._write_table(m, p, index - n, data)
            else:
                self._check_chunk(m, p, index, data)
        except (FormatError, IntegrityError):
            self._refused(index)
            raise
        if index < n:
            slot.write(index * m.chunk_size, self._decode(m, index, data))
        self._cooling.pop(index, None)
        p.mark(index)
        self._unsaved += len(data)
        if self._unsaved >= _SAVE_BYTES or p.complete():
            p.save()
            self._unsaved = 0
        percent = _percent(p)
        if percent // 5 != self._percent // 5:
            events.emit("downloading", release=m.release, progress=percent)
        self._percent = percent
        return True

    def _new_decoder(self, m):
        """The decoder of an encoded release, its buffers allocated now; None for raw."""
        if m.encoding == "raw":
            return None
        from ota.encoding import Decoder  # imported only when needed: a raw update never pays its heap

        # the slot-hashing buffer is idle while chunks arrive: it holds each decoded piece
        return Decoder(m.chunk_size, m.window_bits, self.running, m.base_size, self._buf)

    def _decode(self, m, index, data):
        """The piece of the result that verified chunk `index` stands for (bad_patch if none)."""
        d = self._decoder
        if d is None:
            return data
        length = min(m.chunk_size, m.size - index * m.chunk_size)
        return d.delta(data, length) if m.encoding == "delta" else d.deflate(data, length)

    def _write_table(self, m, p, j, data):
        # j = 0: the index, checked against the signed root; j > 0: page j-1, against the index.
        if j == 0:
            length, expected = 32 * m.pages, m.table_root
            offset = 0
        else:
            if not test_bit(p.received, m.chunk_count):
                raise StateError("not_yet", "the table's index is not in yet")
            first = (j - 1) * m.fanout
            length = 32 * min(m.fanout, m.chunk_count - first)
            expected = _read_digest(32 * (j - 1))
            offset = 32 * (m.pages + first)
        if len(data) != length:
            raise FormatError("bad_chunk", "wrong table length")
        if hashlib.sha256(data).digest() != expected:
            raise IntegrityError("bad_chunk_digest", "digest table")
        with open(TABLE, "r+b") as f:
            f.seek(offset)
            f.write(data)

    def _check_chunk(self, m, p, index, data):
        expected = m.chunk_size if index < m.chunk_count - 1 else m.size - m.chunk_size * (m.chunk_count - 1)
        if m.encoding != "raw":
            expected = len(data) if 1 <= len(data) <= m.chunk_size + _SLACK else -1
        if len(data) != expected:
            raise FormatError("bad_chunk", "wrong chunk length")
        if not test_bit(p.received, m.chunk_count + 1 + index // m.fanout):
            raise StateError("not_yet", "the chunk's page of the table is not in yet")
        if hashlib.sha256(data).digest() != _read_digest(32 * (m.pages + index)):
            raise IntegrityError("bad_chunk_digest", "chunk %d" % index)

    def finish(self):
        """Check what is in flash against the signed digest, and the signature once more."""
        m, p, slot = self.manifest, self.progress, self.slot
        if m is None or p is None or slot is None or not p.complete():
            raise StateError("incomplete", "chunks are missing")
        p.save()
        if slot.sha256(m.size, self._buf, self.tick) != m.digest:
            self._restart(m, p, slot)
            events.emit("rejected", release=m.release, reason="bad_digest")
            raise IntegrityError("bad_digest", "flash content does not match the manifest")
        if self._check(self._blob).id != m.id:
            raise IntegrityError("bad_signature", "manifest changed")
        if m.target == "trust":
            self._check_trust_file(m)
        self._verified = True
        events.emit("verified", release=m.release, target=m.version)

    def install(self):
        """Switch to the verified slot and hard-reset, once the application permits.
        Returns False while permission is withheld; never returns otherwise. A trust update
        needs no reboot and no permission: the trust file is replaced and True returned."""
        m, p, slot = self.manifest, self.progress, self.slot
        if m is None or p is None or slot is None or not self._verified:
            raise StateError("not_verified", "finish() first")
        if m.target == "trust":
            return self._install_trust(m)
        if not self.permission():
            if not self._asked:
                events.emit("awaiting_permission", release=m.release, target=m.version)
                self._asked = True
            return False
        events.emit("installing", release=m.release, target=m.version)
        if m.target == "bundle":
            return slot.install(m, self.tick)  # unpacks, checks, activates and resets; or raises
        if self.target is None:
            raise StateError("unsupported", "no firmware slot on this board")
        pending = {"release": m.release, "version": m.version, "counter": m.counter, "from": self.version,
                   "encoding": m.encoding,
                   "slot": otadata.slot_index(self.target), "seq": otadata.newest()[0]}
        store.write_json(store.PENDING, pending)
        self._decoder = None  # the image is verified: its decoding buffers go before the switch
        try:
            self.target.set_boot()
        except OSError:
            store.remove(store.PENDING)
            self._restart(m, p, slot)
            self._decoder = self._new_decoder(m)
            events.emit("rejected", release=m.release, reason="invalid_image")
            raise IntegrityError("invalid_image", "the bootloader's image check failed")
        events.emit("rebooting", release=m.release, target=m.version)
        # A hard reset, never deep sleep: a deep-sleep wake skips the bootloader's rollback check.
        machine.reset()

    def _check_trust_file(self, m):
        try:
            new = trust.read(TRUST_NEW)
        except (OSError, FormatError):
            new = None
        if new is None or new.serial != m.counter or not any(k.roles & trust.TRUST for k in new.keys):
            self._restart(m, self.progress, self.slot)
            events.emit("rejected", release=m.release, reason="bad_trust")
            raise FormatError("bad_trust", "the new trust file is not acceptable")

    def _install_trust(self, m):
        """Replace the trust file (one rename) and use its keys from now on."""
        os.rename(TRUST_NEW, self.trust_path)
        self.keys[:] = trust.load(self.trust_path)
        Progress.clear()
        store.remove(store.MANIFEST)
        self.manifest = self.progress = self.slot = self._blob = None
        self._verified = False
        events.emit("trusted", release=m.release, serial=m.counter)
        return True

    def _restart(self, m, p, slot):
        """Forget what was downloaded: the next attempt starts from an unerased slot."""
        progress = Progress(m.id, m.counter, p.chunk_count, p.sector_count)
        progress.save()
        self.progress = slot.progress = progress
        self._verified = False


def _create(path, size):
    """A file of `size` zero bytes, written in small pieces."""
    zeros = bytes(256)
    with open(path, "wb") as f:
        while size > 0:
            f.write(zeros[:min(size, 256)])
            size -= 256


def _read_digest(offset):
    """The 32 bytes at `offset` of the digest table file."""
    with open(TABLE, "rb") as f:
        f.seek(offset)
        return f.read(32)


def _percent(progress):
    return progress.count * 100 // progress.chunk_count


def _split(message):
    """(release blob, timestamp record, [delta variant blobs]) of a manifest topic's message:
    each part's own length fields say where it ends; anything else is bad_format."""
    mv = memoryview(message)
    end = manifest.blob_length(mv)
    blob, rest = mv[:end], mv[end:]
    record = rest[:0]
    if len(rest) >= 8 and bytes(rest[:4]) == b"MOTS":
        end = rest[6] << 8 | rest[7]
        if end >= len(rest):
            raise FormatError("bad_format", "timestamp record lengths")
        end += 1 + rest[end]
        record, rest = rest[:end], rest[end:]
    variants: list = []
    while len(rest):
        end = manifest.blob_length(rest)
        if end > len(rest) or len(variants) == _VARIANTS_MAX:
            raise FormatError("bad_format", "trailing bytes after the manifest")
        variants.append(rest[:end])
        rest = rest[end:]
    return blob, record, variants
