"""The updater core: one signed release from offer to reboot, whatever the transport.

    u = Updater(keys, board="esp32-generic")
    m = u.offer(manifest_blob)          # verified, or a typed OTAError; None: nothing to do
    for i in u.missing(4): u.write_chunk(i, data_of_chunk_i)   # any order, duplicates fine
    if u.complete(): u.finish(); u.install()   # install() returns False until permitted

It writes only the inactive slot; nothing becomes bootable until the bytes in flash match the
signed digest, and the reboot waits for the application's permission (`ota.policy`)."""

import esp32
import machine
from micropython import const

from ota import events, history, manifest, otadata, store
from ota.errors import FormatError, IntegrityError, OTAError, StateError
from ota.policy import now as install_now
from ota.progress import Progress, test_bit
from ota.slot import SECTOR, Slot, app_version

_SAVE_EVERY = const(8)  # chunks between progress saves: fewer filesystem writes, less re-fetching


class Updater:
    def __init__(self, keys, board, permission=install_now, clock=None, tick=None):
        self.keys = keys
        self.board = board
        self.permission = permission  # callable: may the device switch and reboot now?
        self.clock = clock  # seconds since 1970 when the device has a trusted clock
        self.tick = tick  # called during long work, e.g. to feed a watchdog
        running = esp32.Partition(esp32.Partition.RUNNING)  # type: ignore[arg-type]  # stub: label only; RUNNING works
        self.version = app_version(running)
        self.target = running.get_next_update()
        self.manifest = None
        self.progress = None
        self.slot = None
        self._blob = None
        self._verified = False
        self._asked = False
        self._unsaved = 0
        self._percent = -1
        self._buf = bytearray(SECTOR)  # for hashing the slot, allocated before any big work

    def _check(self, blob):
        now = self.clock() if self.clock else None
        return manifest.check(blob, self.keys, self.board, history.load()["counter"], self.target.info()[3], now, self.tick)

    @property
    def verified(self):
        """True once `finish()` has checked the slot: `install()` may be called."""
        return self._verified

    def offer(self, blob):
        """Verify a manifest and start (or resume) its download. Returns the Manifest, or None
        when there is nothing to do (the release runs already, or it rolled back before)."""
        if otadata.running_state() == otadata.PENDING_VERIFY:
            raise StateError("unconfirmed", "the running image is on trial")
        try:
            m = self._check(blob)
        except Exception as exc:
            events.emit("rejected", reason=getattr(exc, "reason", "bad_format"))
            raise
        past = history.load()
        if m.id == past["release"] or m.id in past["failed"]:
            return None
        current = self.manifest
        if current and current.id == m.id:
            return current
        if current and (self._verified or m.counter < current.counter):
            events.emit("rejected", release=m.id, reason="busy")
            raise StateError("busy", "another update is in progress")
        saved = Progress.load()
        sectors = (m.size + SECTOR - 1) // SECTOR
        if saved and saved.release == m.id and saved.fits(m.counter, m.chunk_count, sectors) \
                and store.read(store.MANIFEST) == blob:
            progress = saved
        elif saved and m.counter < saved.counter and self._resumable(saved):
            events.emit("rejected", release=m.id, reason="busy")
            raise StateError("busy", "a newer download is in progress")
        else:
            progress = Progress(m.id, m.counter, m.chunk_count, sectors)
            store.write(store.MANIFEST, blob)
            progress.save()
        self.manifest, self.progress, self._blob = m, progress, blob
        self.slot = Slot(self.target, progress)
        self._verified = self._asked = False
        self._unsaved = 0
        events.emit("offered", release=m.id, target=m.version, resumed=progress.count, progress=_percent(progress))
        return m

    def _resumable(self, saved):
        """True when the saved progress belongs to the saved, still acceptable signed manifest
        (a record that does not cannot hold newer offers off)."""
        blob = store.read(store.MANIFEST)
        try:
            return blob is not None and self._check(blob).id == saved.release
        except OTAError:
            return False

    def missing(self, limit):
        return self.progress.missing(limit) if self.progress else []

    def complete(self):
        return self.progress is not None and self.progress.complete()

    def write_chunk(self, index, data):
        """Write chunk `index` into the slot. Returns False for a chunk already in flash."""
        m, p, slot = self.manifest, self.progress, self.slot
        if m is None or p is None or slot is None:
            raise StateError("no_offer", "no manifest offered")
        if not 0 <= index < m.chunk_count:
            raise FormatError("bad_chunk", "index out of range")
        expected = m.chunk_size if index < m.chunk_count - 1 else m.size - m.chunk_size * (m.chunk_count - 1)
        if len(data) != expected:
            raise FormatError("bad_chunk", "wrong chunk length")
        if test_bit(p.received, index):
            return False
        slot.write(index * m.chunk_size, data)
        p.mark(index)
        self._unsaved += 1
        if self._unsaved >= _SAVE_EVERY or p.complete():
            p.save()
            self._unsaved = 0
        percent = _percent(p)
        if percent // 5 != self._percent // 5:
            events.emit("downloading", release=m.id, progress=percent)
        self._percent = percent
        return True

    def finish(self):
        """Check what is in flash against the signed digest, and the signature once more."""
        m, p, slot = self.manifest, self.progress, self.slot
        if m is None or p is None or slot is None or not p.complete():
            raise StateError("incomplete", "chunks are missing")
        p.save()
        if slot.sha256(m.size, self._buf, self.tick) != m.digest:
            self._restart(m, p, slot)
            events.emit("rejected", release=m.id, reason="bad_digest")
            raise IntegrityError("bad_digest", "flash content does not match the manifest")
        if self._check(self._blob).id != m.id:
            raise IntegrityError("bad_signature", "manifest changed")
        self._verified = True
        events.emit("verified", release=m.id, target=m.version)

    def install(self):
        """Switch to the verified slot and hard-reset, once the application permits.
        Returns False while permission is withheld; never returns otherwise."""
        m, p, slot = self.manifest, self.progress, self.slot
        if m is None or p is None or slot is None or not self._verified:
            raise StateError("not_verified", "finish() first")
        if not self.permission():
            if not self._asked:
                events.emit("awaiting_permission", release=m.id, target=m.version)
                self._asked = True
            return False
        events.emit("installing", release=m.id, target=m.version)
        pending = {"release": m.id, "version": m.version, "counter": m.counter, "from": self.version,
                   "slot": otadata.slot_index(self.target), "seq": otadata.newest()[0]}
        store.write_json(store.PENDING, pending)
        try:
            self.target.set_boot()
        except OSError:
            store.remove(store.PENDING)
            self._restart(m, p, slot)
            events.emit("rejected", release=m.id, reason="invalid_image")
            raise IntegrityError("invalid_image", "the bootloader's image check failed")
        events.emit("rebooting", release=m.id, target=m.version)
        # A hard reset, never deep sleep: a deep-sleep wake skips the bootloader's rollback check.
        machine.reset()

    def _restart(self, m, p, slot):
        """Forget what was downloaded: the next attempt starts from an unerased slot."""
        progress = Progress(m.id, m.counter, p.chunk_count, p.sector_count)
        progress.save()
        self.progress = slot.progress = progress
        self._verified = False


def _percent(progress):
    return progress.count * 100 // progress.chunk_count
