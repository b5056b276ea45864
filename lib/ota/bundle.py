"""The app-bundle sink: a signed set of files (.py, .mpy, data) for the inactive bundle folder.

The updater treats it as it treats the firmware slot: chunks land in a staging folder
(`.ota/bundle.part/<index>`, one file per chunk: any order, resumable, and never a write into
the middle of a LittleFS file, which rewrites the file's tail), `sha256()` hashes what was
written, and `install()` unpacks the verified bundle (docs/FORMAT.md section 6) into the
inactive folder, checking each file as read back, then makes it active in one atomic step: the
bundle record (`ota.bundle_boot`) names the new folder, on trial, and the board resets. The
trial and its rollback belong to `ota.bundle_boot` and `ota.trial` (docs/BUNDLES.md)."""
import hashlib
import os
import struct

import machine
from micropython import const

from ota import bundle_boot, events, history, store
from ota.bundle_trial import STAGE, remove_tree
from ota.errors import FormatError, IntegrityError

_MAGIC = b"MOTB"
_HEAD = ">4sBBH"
_ENTRY = ">BI32s"
_ENTRY_SIZE = const(37)
_PATH_MAX = const(96)
_RESERVE = const(32768)  # room for the filesystem's metadata, the state files and the digest table
_BUF = const(1024)


def _stage():
    return store.path(STAGE)


def inactive():
    """The folder name a new bundle goes to: the one not running now."""
    return "b" if bundle_boot.load()["active"] == "a" else "a"


def _tree_size(path, block):
    """Bytes the files under `path` hold on the filesystem, each rounded up to whole blocks."""
    total = 0
    try:
        names = os.listdir(path)
    except OSError:
        return 0
    for name in names:
        sub = path + "/" + name
        st = os.stat(sub)
        total += _tree_size(sub, block) if st[0] & 0x4000 else -(-st[6] // block) * block
    return total


def limits(chunk_size):
    """(anti-downgrade floor, largest bundle that fits). The floor is the bundles' own, apart
    from the firmware's. A bundle is staged (one file per chunk: whole blocks each), then
    unpacked, and the inactive folder's old content and an old staging are freed first."""
    st = os.statvfs(".")
    block = st[0]
    free = block * st[4] + _tree_size(bundle_boot.folder(inactive()), block) + _tree_size(_stage(), block) - _RESERVE
    staged = -(-chunk_size // block) * block  # the room one chunk's file takes
    return bundle_boot.load()["counter"], max(0, free * chunk_size // (staged + chunk_size))


def _valid_path(path):
    if not 1 <= len(path) <= _PATH_MAX or path.startswith(b".ota/"):
        return False
    for c in path:
        if not (0x30 <= c <= 0x39 or 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A or c in b"._-/"):
            return False
    for part in path.split(b"/"):
        if part in (b"", b".", b".."):
            return False
    return True


def read_table(f, size):
    """The entries (path, size, digest) of the bundle table at the start of `f`, a seekable
    stream of a `size`-byte bundle, one at a time: the whole table is checked first (FormatError
    `bad_format` for anything docs/FORMAT.md section 6 does not allow), then read again entry by
    entry, so it is never held whole in RAM. A duplicate path is the caller's to catch."""
    head = f.read(8)
    if len(head) != 8:
        raise FormatError("bad_format", "bundle header")
    magic, version, count, h = struct.unpack(_HEAD, head)
    if magic != _MAGIC or version != 1 or count < 1 or h > size:
        raise FormatError("bad_format", "bundle header")
    offset = 8
    total = 0
    for _ in range(count):
        raw = f.read(_ENTRY_SIZE)
        if len(raw) != _ENTRY_SIZE:
            raise FormatError("bad_format", "bundle table")
        n, length, _digest = struct.unpack(_ENTRY, raw)
        path = f.read(n)
        if len(path) != n or not _valid_path(path):
            raise FormatError("bad_format", "bundle path")
        offset += _ENTRY_SIZE + n
        total += length
    if offset != h or h + total != size:
        raise FormatError("bad_format", "bundle lengths")
    f.seek(8)
    for _ in range(count):
        n, length, digest = struct.unpack(_ENTRY, f.read(_ENTRY_SIZE))
        yield f.read(n).decode(), length, digest


class _Staged:
    """The staged chunks read back in order as one stream (read, readinto)."""

    def __init__(self, chunk_size):
        self.chunk_size = chunk_size
        self.index = 0
        self.f = None

    def readinto(self, view):
        while True:
            if self.f is None:
                try:
                    self.f = open("%s/%d" % (_stage(), self.index), "rb")
                except OSError:
                    return 0  # past the last chunk
            n = self.f.readinto(view)
            if n:
                return n
            self.f.close()
            self.f = None
            self.index += 1

    def seek(self, offset):
        self.close()
        self.f = None
        self.index = offset // self.chunk_size
        try:
            self.f = open("%s/%d" % (_stage(), self.index), "rb")
            self.f.seek(offset % self.chunk_size)
        except OSError:
            self.f = None  # past the last chunk: reads return nothing

    def read(self, n):
        buf = bytearray(n)
        got = 0
        while got < n:
            k = self.readinto(memoryview(buf)[got:])
            if not k:
                break
            got += k
        return bytes(buf[:got])

    def close(self):
        if self.f is not None:
            self.f.close()


class Sink:
    """The inactive bundle folder, reached through the staged chunks."""

    def __init__(self, m, progress, tick=None):
        self.progress = progress
        self.chunk_size = m.chunk_size
        if progress.count == 0:  # a new download: nothing of an older one is kept
            remove_tree(_stage(), tick)
            for path in (store.STATE_DIR, _stage()):
                try:
                    os.mkdir(path)
                except OSError:
                    pass  # already there

    def write(self, offset, data):
        """Write one chunk as its own file, closed before the updater records it."""
        with open("%s/%d" % (_stage(), offset // self.chunk_size), "wb") as f:
            f.write(data)

    def sha256(self, length, buf, tick=None):
        h = hashlib.sha256()
        view = memoryview(buf)
        src = _Staged(self.chunk_size)
        done = 0
        try:
            while done < length:
                n = src.readinto(view[:min(len(buf), length - done)])
                if not n:
                    break
                h.update(view[:n])
                done += n
                if tick:
                    tick()
        finally:
            src.close()  # a file left to the collector is closed by its finaliser: see docs/SIMULATOR.md
        return h.digest()

    def install(self, m, tick=None):
        """Unpack into the inactive folder, check every file as read back, activate on trial and
        reset. Leaves the running bundle as it was on an error: FormatError (the release is
        malformed and never tried again) or IntegrityError (read back wrong: tried again)."""
        try:
            try:
                self._unpack(m, tick)
            except OSError as exc:  # no room, or a path that is a file and a folder at once
                raise IntegrityError("write_failed", str(exc))
        except FormatError:
            history.failed(m.id)
            events.emit("rejected", release=m.id, reason="bad_format")
            raise
        except IntegrityError as exc:
            events.emit("rejected", release=m.id, reason=exc.reason)
            raise
        state = bundle_boot.load()
        state["trial"] = {"release": m.id, "version": m.version, "counter": m.counter, "from": state["active"],
                          "boots": 0, "reason": None}
        state["active"] = inactive()
        state["outcome"] = None
        bundle_boot.save(state)  # the one atomic step: the next boot runs the new bundle, on trial
        events.emit("rebooting", release=m.id, target=m.version)
        machine.reset()

    def _unpack(self, m, tick):
        target = bundle_boot.folder(inactive())
        buf = bytearray(_BUF)
        table, src = _Staged(self.chunk_size), _Staged(self.chunk_size)
        try:
            for i, (path, length, digest) in enumerate(read_table(table, m.size)):
                if i == 0:  # the whole table is checked by now: the folder may be emptied
                    src.seek(struct.unpack(_HEAD, src.read(8))[3])  # the files start after the table
                    remove_tree(target, tick)
                    _makedirs(target)
                path = target + "/" + path
                try:
                    os.stat(path)
                    raise FormatError("bad_format", "a path twice in the bundle")
                except OSError:
                    pass  # the folder was emptied: a file already there came earlier in this table
                _makedirs(path.rsplit("/", 1)[0])
                _copy(src, path, length, buf, tick)
                if _file_digest(path, buf, tick) != digest:
                    raise IntegrityError("bad_digest", path)
        finally:
            table.close()
            src.close()


def _makedirs(path):
    built = ""
    for part in path.split("/"):
        built = built + "/" + part if built else part
        try:
            os.mkdir(built)
        except OSError:
            pass  # already there


def _copy(src, path, length, buf, tick):
    view = memoryview(buf)
    with open(path, "wb") as out:
        while length:
            n = src.readinto(view[:min(len(buf), length)])
            if not n:
                raise IntegrityError("bad_digest", "bundle shorter than its table")
            out.write(view[:n])
            length -= n
            if tick:
                tick()


def _file_digest(path, buf, tick):
    h = hashlib.sha256()
    view = memoryview(buf)
    with open(path, "rb") as f:
        while True:
            n = f.readinto(view)
            if not n:
                return h.digest()
            h.update(view[:n])
            if tick:
                tick()
