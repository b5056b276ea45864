"""`esp32.Partition` as the ESP32 port has it, over the simulated flash.

The device's flash file is OTASIM_FLASH, its partition table OTASIM_PARTITIONS (default: the
ESP32_GENERIC OTA table, plus the "vfs" partition the port's start-up adds) and the slot the
bootloader loaded OTASIM_RUNNING (default ota_0). OTASIM_TEAR="<op> <seed>" plans a power cut
inside flash operation <op> of this run; OTASIM_TRACE=1 reports every flash operation.
Errors are the port's: OSError(-esp_err, name), OSError(ENOENT) for a missing partition.
"""
import errno
import os

import sim_flash
import sim_image  # esp_image_verify is firmware on a board: loaded up front, not into a fragmented heap mid-install
import sim_link
import sim_otadata
from sim_flash import SECTOR, SUBTYPE_ANY, TYPE_APP, TYPE_DATA, esp_error

_board = []  # [flash, table], opened on first use


def _here():
    f = __file__
    return f[:f.rfind("/")] if "/" in f else "."


def _device():
    if not _board:
        path = os.getenv("OTASIM_FLASH")
        if not path:
            raise OSError(errno.ENOENT, "OTASIM_FLASH is not set")
        table = os.getenv("OTASIM_PARTITIONS") or _here() + "/../../esp32/partitions-4MiB-ota.csv"
        flash = sim_flash.Flash(path, _planned_tear())
        flash.on_cut = _power_cut
        if os.getenv("OTASIM_TRACE"):
            flash.trace = _trace
        _board.append(flash)
        _board.append(sim_flash.add_vfs(sim_flash.load_table(table)))
    return _board[0], _board[1]


def _planned_tear():
    spec = os.getenv("OTASIM_TEAR")
    if not spec:
        return None
    at, seed = spec.split()
    return sim_flash.Tear(int(at), int(seed))


def _where(addr):
    for row in _board[1] if len(_board) > 1 else ():
        if row[3] <= addr < row[3] + row[4]:
            return row[0]
    return "-"


def _trace(kind, addr):
    sim_link.send("op %s %s" % (kind, _where(addr)))


def _power_cut(kind, addr):
    """The planned cut: the half-done operation is in the flash file; the board goes dark."""
    sim_link.halt("powercut %s %s 0x%x" % (kind, _where(addr), addr))


def _io(row):
    return sim_flash.PartitionIO(_device()[0], row)


def _otadata_io():
    rows = sim_flash.find(_device()[1], TYPE_DATA, 0)  # data/ota
    return _io(rows[0]) if rows else None


def _boot_row():
    table = _device()[1]
    slots = sim_flash.ota_slots(table)
    io = _otadata_io()
    if io is None:
        return None
    slot = sim_otadata.boot_slot(sim_otadata.read(io), len(slots))
    if slot == sim_otadata.FACTORY:  # find_default_boot_partition(): factory, ota_0.., test
        for subtype in [0] + [s[2] for s in slots] + [0x20]:
            rows = sim_flash.find(table, TYPE_APP, subtype)
            if rows:
                return rows[0]
        return None
    return slots[slot] if slot < len(slots) else None


def _by_label(label):
    table = _device()[1]
    for ptype in (TYPE_APP, TYPE_DATA):
        rows = sim_flash.find(table, ptype, SUBTYPE_ANY, label)
        if rows:
            return rows[0]
    return None


class Partition:
    """One partition of the flash, usable as a block device of `block_size` bytes."""

    BOOT = 0
    RUNNING = 1
    TYPE_APP = TYPE_APP
    TYPE_DATA = TYPE_DATA

    def __init__(self, id, *more):  # the port takes no keyword arguments here
        if len(more) > 1:
            raise TypeError("function expected at most 2 arguments, got %d" % (1 + len(more)))
        block_size = more[0] if more else SECTOR
        if isinstance(id, int):
            if id == Partition.BOOT:
                row = _boot_row()
            elif id == Partition.RUNNING:
                row = _by_label(os.getenv("OTASIM_RUNNING") or "ota_0")
            else:
                raise ValueError
        else:
            row = _by_label(id)
        if row is None:
            raise OSError(errno.ENOENT)
        self._row = row
        self._io = _io(row)
        self._block_size = block_size
        self._cache = bytearray(SECTOR) if block_size < SECTOR else None

    def __repr__(self):
        r = self._row
        return "<Partition type=%u, subtype=%u, address=%u, size=%u, label=%s, encrypted=0>" % (
            r[1], r[2], r[3], r[4], r[0])

    @staticmethod
    def find(type=TYPE_APP, subtype=SUBTYPE_ANY, label=None, block_size=SECTOR):
        return [Partition(r[0], block_size) for r in sim_flash.find(_device()[1], type, subtype, label)]

    def info(self):
        r = self._row
        return (r[1], r[2], r[3], r[4], r[0], False)

    # readblocks/writeblocks take keywords here (the port does not): *args would cost a heap
    # allocation per call, and the filesystem calls them for every block it touches.
    def readblocks(self, block_num, buf, offset=0):
        self._io.read(block_num * self._block_size + offset, buf)

    def writeblocks(self, block_num, buf, offset=None):
        addr = block_num * self._block_size
        if offset is not None:
            addr += offset  # an extended write never erases
        elif self._cache is None:
            self._io.erase_range(addr, len(buf))
        else:
            self._erase_partial(addr, len(buf))
        self._io.write(addr, buf)

    def _erase_partial(self, offset, length):
        """Erase [offset, offset+length) sector by sector, keeping the rest of each sector."""
        io, cache = self._io, self._cache
        sector = offset - offset % SECTOR
        o = offset % SECTOR
        top = offset + length
        while sector < top:
            if o > 0 or top < sector + SECTOR:
                io.read(sector, cache)
            io.erase_range(sector, SECTOR)
            if o > 0:
                io.write(sector, memoryview(cache)[:o])
            if top < sector + SECTOR:
                io.write(top, memoryview(cache)[top - sector:])
            o = 0
            sector += SECTOR

    def ioctl(self, cmd, arg):
        if cmd in (1, 2, 3):  # INIT, DEINIT, SYNC
            return 0
        if cmd == 4:  # BLOCK_COUNT
            return self._row[4] // self._block_size
        if cmd == 5:  # BLOCK_SIZE
            return self._block_size
        if cmd == 6:  # BLOCK_ERASE
            if self._block_size != SECTOR:
                return -errno.EINVAL
            self._io.erase_range(arg * SECTOR, SECTOR)
            return 0
        return None

    def set_boot(self):
        """esp_ota_set_boot_partition(): verify the whole image, then switch otadata to it."""
        try:
            sim_image.verify(self._io)
        except ValueError:
            raise esp_error(sim_flash.ESP_ERR_OTA_VALIDATE_FAILED)
        if self._row[1] != TYPE_APP:
            raise esp_error(sim_flash.ESP_ERR_INVALID_ARG)
        otadata = _otadata_io()
        if self._row[2] == 0:  # factory: blank otadata
            if otadata is None:
                raise esp_error(sim_flash.ESP_ERR_NOT_FOUND)
            otadata.erase_range(0, otadata.size)
            return
        slots = sim_flash.ota_slots(_device()[1])
        sim_otadata.set_boot(otadata, self._row[2] - sim_flash.APP_OTA_0, len(slots))

    def get_next_update(self):
        """esp_ota_get_next_update_partition(): the OTA slot after this one, wrapping round."""
        slots = sim_flash.ota_slots(_device()[1])
        if not slots:
            raise OSError(errno.ENOENT)
        for i in range(len(slots)):
            if slots[i][0] == self._row[0]:
                return Partition(slots[(i + 1) % len(slots)][0])
        return Partition(slots[0][0])

    @classmethod
    def mark_app_valid_cancel_rollback(cls):
        sim_otadata.mark_valid(_otadata_io(), len(sim_flash.ota_slots(_device()[1])))

