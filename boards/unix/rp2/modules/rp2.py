"""`rp2` as on the rp2 port, for a simulated Pico W: `Flash`, the block device under the
filesystem (ports/rp2/rp2_flash.c), backed by a host file that holds the storage region.

NOR rules: a program only clears bits (new = old AND data), 256 bytes per page, at page-aligned
offsets; an erase sets a whole 4096-byte sector to 0xFF. Each operation adds its worst-case
duration from the Pico W's flash chip (W25Q16JV data sheet) to a busy clock that the watchdog
model reads. With OTASIM_CUT_AT=n the n-th page program or sector erase of this run is torn
(a random part of its bits changed) and the power goes off there."""
import os
import random

import sim_link
from micropython import const

BLOCK_SIZE = const(4096)  # FLASH_SECTOR_SIZE: the erase unit and the block device's block
PAGE_SIZE = const(256)  # FLASH_PAGE_SIZE: the program unit
STORAGE_BYTES = const(868352)  # RPI_PICO_W mpconfigboard.cmake: MICROPY_HW_FLASH_STORAGE_BYTES
ERASE_US = const(400000)  # W25Q16JV tSE max, 4 KiB sector erase
PROGRAM_US = const(3000)  # W25Q16JV tPP max, 256-byte page program

_file = open(os.getenv("OTASIM_FLASH"), "r+b")
_cut = os.getenv("OTASIM_CUT_AT")
_ops_left = int(_cut) if _cut else -1
random.seed(int(os.getenv("OTASIM_SEED") or "1"))
_busy_us = 0
_BLANK_PAGE = b"\xff" * PAGE_SIZE


def busy_us():
    """Worst-case flash time since the last call (the watchdog model charges it to a feed)."""
    global _busy_us
    spent, _busy_us = _busy_us, 0
    return spent


def _op(cost):
    """Count one flash operation; True when the power goes off during it."""
    global _ops_left, _busy_us
    _busy_us += cost
    if _ops_left < 0:
        return False
    sim_link.send("op")
    _ops_left -= 1
    return _ops_left == 0


def _power_off():
    _file.flush()
    sim_link.halt("cut")


def _erase(addr):
    if _op(ERASE_US):
        _file.seek(addr)
        old = _file.read(BLOCK_SIZE)
        _file.seek(addr)
        _file.write(bytes(b | random.getrandbits(8) for b in old))  # partly erased
        _power_off()
    _file.seek(addr)
    _file.write(b"\xff" * BLOCK_SIZE)


def _program(addr, data):
    for page in range(0, len(data), PAGE_SIZE):
        _file.seek(addr + page)
        old = _file.read(PAGE_SIZE)
        new = data[page:page + PAGE_SIZE]
        if _op(PROGRAM_US):
            new = bytes(n | random.getrandbits(8) for n in new)  # only some bits cleared yet
            _file.seek(addr + page)
            _file.write(bytes(o & n for o, n in zip(old, new)))
            _power_off()
        _file.seek(addr + page)
        _file.write(new if old == _BLANK_PAGE else bytes(o & n for o, n in zip(old, new)))


class Flash:
    """The filesystem's flash region (or a block-aligned part of it: start=, len=)."""

    def __init__(self, *, start=-1, len=-1):
        if start == -1:
            start = 0
        elif not (0 <= start < STORAGE_BYTES and start % BLOCK_SIZE == 0):
            raise ValueError
        if len == -1:
            len = STORAGE_BYTES - start
        elif not (0 < len and start + len <= STORAGE_BYTES and len % BLOCK_SIZE == 0):
            raise ValueError
        self._base = start
        self._size = len

    def _addr(self, block, offset, n):
        addr = self._base + block * BLOCK_SIZE + offset
        if block < 0 or offset < 0 or addr + n > self._base + self._size:
            raise ValueError("outside the flash region")  # the port reads or writes past it
        return addr

    def readblocks(self, block, buf, offset=0):
        addr = self._addr(block, offset, len(buf))
        _file.seek(addr)
        _file.readinto(buf)

    def writeblocks(self, block, buf, offset=None):
        """3 arguments: erase the sectors `buf` spans, then program; 4: program only."""
        data = bytes(buf)
        addr = self._addr(block, offset or 0, len(data))
        if offset is None:
            if len(data) % BLOCK_SIZE:
                raise ValueError("erase length not a multiple of 4096")  # flash_range_erase's precondition
            for sector in range(addr, addr + len(data), BLOCK_SIZE):
                _erase(sector)
        if addr % PAGE_SIZE or len(data) % PAGE_SIZE:
            raise ValueError("program not page aligned")  # flash_range_program's precondition
        _program(addr, data)

    def ioctl(self, op, arg):
        if op in (1, 2, 3):  # INIT, DEINIT, SYNC
            return 0
        if op == 4:  # BLOCK_COUNT
            return self._size // BLOCK_SIZE
        if op == 5:  # BLOCK_SIZE
            return BLOCK_SIZE
        if op == 6:  # BLOCK_ERASE
            _erase(self._addr(arg, 0, BLOCK_SIZE))
            return 0
        return None
