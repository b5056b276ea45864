"""The simulated 4 MiB SPI NOR flash of an ESP32 and its partition table.

Shared by the device (MicroPython) and the host supervisor (CPython), so it uses only what
both have. The flash is one host file; every write goes straight to it (no buffering), so a
power cut (SIGKILL) leaves exactly what was written so far. A planned cut (`Tear`) stops the
flash inside one page program or sector erase and leaves that page or sector half done, as NOR
flash does. Errors are the OSError values the esp32 port raises: OSError(-esp_err, name).
"""
import sys

FLASH_SIZE = 0x400000
SECTOR = 4096
PAGE = 256  # a NOR page program: the unit a power cut can split a write into

TYPE_APP = 0
TYPE_DATA = 1
SUBTYPE_ANY = 0xFF
APP_OTA_0 = 0x10

ESP_FAIL = -1
ESP_ERR_INVALID_ARG = 0x102
ESP_ERR_INVALID_SIZE = 0x104
ESP_ERR_NOT_FOUND = 0x105
ESP_ERR_OTA_VALIDATE_FAILED = 0x1503
_NAMES = {
    ESP_FAIL: "ESP_FAIL",
    ESP_ERR_INVALID_ARG: "ESP_ERR_INVALID_ARG",
    ESP_ERR_INVALID_SIZE: "ESP_ERR_INVALID_SIZE",
    ESP_ERR_NOT_FOUND: "ESP_ERR_NOT_FOUND",
    ESP_ERR_OTA_VALIDATE_FAILED: "ESP_ERR_OTA_VALIDATE_FAILED",
}

_APP_SUBTYPES = {"factory": 0x00, "test": 0x20}
_DATA_SUBTYPES = {"ota": 0x00, "phy": 0x01, "nvs": 0x02, "coredump": 0x03, "nvs_keys": 0x04,
                  "efuse": 0x05, "undefined": 0x06, "esphttpd": 0x80, "fat": 0x81,
                  "spiffs": 0x82, "littlefs": 0x83}


def esp_error(code):
    """The exception MicroPython's check_esp_err() raises for an esp_err_t. With the heap
    locked it cannot make the name string and raises a bare OSError: the esp32 port has no
    emergency exception buffer for the arguments (its size is 0 unless the program sets one)."""
    try:
        bytearray(1)
    except MemoryError:
        return OSError()
    return OSError(-code, _NAMES.get(code, "ESP_ERR_0x%x" % code))


def _number(text):
    text = text.strip().lower()
    scale = 1
    if text.endswith("k"):
        scale, text = 1024, text[:-1]
    elif text.endswith("m"):
        scale, text = 1024 * 1024, text[:-1]
    return int(text, 0) * scale


def _subtype(ptype, text):
    text = text.strip().lower()
    if ptype == TYPE_APP:
        if text.startswith("ota_"):
            return APP_OTA_0 + int(text[4:])
        if text in _APP_SUBTYPES:
            return _APP_SUBTYPES[text]
    elif text in _DATA_SUBTYPES:
        return _DATA_SUBTYPES[text]
    return _number(text)


def load_table(path):
    """Parse an ESP-IDF partition CSV into a list of (label, type, subtype, address, size)."""
    table = []
    offset = 0x9000  # after the partition table at 0x8000
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            cols = [c.strip() for c in line.split(",")]
            label, ptype = cols[0], cols[1].lower()
            ptype = TYPE_APP if ptype == "app" else TYPE_DATA if ptype == "data" else _number(ptype)
            align = 0x10000 if ptype == TYPE_APP else SECTOR
            addr = _number(cols[3]) if cols[3] else (offset + align - 1) // align * align
            size = _number(cols[4])
            table.append((label, ptype, _subtype(ptype, cols[2]), addr, size))
            offset = addr + size
    return table


def add_vfs(table):
    """The esp32 port's start-up (main.c, MICROPY_BOARD_STARTUP): with no "vfs" or "ffat"
    partition in the table, a data/fat "vfs" partition covers the flash after the last one."""
    if [p for p in table if p[1] == TYPE_DATA and p[0] in ("vfs", "ffat")]:
        return table
    end = max(p[3] + p[4] for p in table) if table else 0
    if 0 < end < FLASH_SIZE:
        return table + [("vfs", TYPE_DATA, _DATA_SUBTYPES["fat"], end, FLASH_SIZE - end)]
    return table


def find(table, ptype=TYPE_APP, subtype=SUBTYPE_ANY, label=None):
    """esp_partition_find(): matching rows in table order."""
    return [p for p in table if p[1] == ptype and subtype in (SUBTYPE_ANY, p[2])
            and (label is None or p[0] == label)]


def ota_slots(table):
    """The OTA app partitions ordered by slot number (ota_0, ota_1, ...)."""
    slots = [p for p in table if p[1] == TYPE_APP and APP_OTA_0 <= p[2] < APP_OTA_0 + 16]
    return sorted(slots, key=lambda p: p[2])


class PowerCut(Exception):
    """The planned power cut happened (host side: the bootloader's own flash writes)."""


class Tear:
    """A planned power cut inside flash operation number `at` (0-based, page programs and
    sector erases counted), which is left half done. A NOR chip works on many cells at once and
    each cell takes its own time, so the cut leaves every 32-bit word of the page or sector
    done, untouched, or with a random part of its bits changed; `seed` decides which."""

    def __init__(self, at, seed):
        self.left = at
        self.seed = seed & 0x7FFFFFFF or 1

    def _next(self):
        self.seed = (self.seed * 1103515245 + 12345) & 0x7FFFFFFF  # an LCG: same on both Pythons
        return self.seed >> 16

    def mask(self, n):
        """Which bits of n bytes the operation reached: per word all (5/8), none (1/8), some."""
        out = bytearray(n)
        for w in range(0, n, 4):
            kind = self._next() & 7
            for i in range(w, min(w + 4, n)):
                out[i] = 0xFF if kind < 5 else 0 if kind == 5 else self._next() & 0xFF
        return out


class Flash:
    """A NOR flash in a host file: writes can only clear bits, erase sets a sector to 0xFF.

    `tear` (a Tear) plans a power cut; `on_cut(kind, addr)` is then called after the half-done
    operation and must not return (default: raise PowerCut). `trace(kind, addr)`, when set, is
    told of every operation ("p" page program, "e" sector erase) before it happens."""

    def __init__(self, path, tear=None):
        if sys.implementation.name == "micropython":
            self._f = open(path, "r+b")  # the unix port's files are unbuffered already
        else:
            self._f = open(path, "r+b", buffering=0)
        self._page = bytearray(PAGE)  # a page: a board's flash driver takes no MicroPython heap
        self._erased = b"\xff" * SECTOR  # an erase reaches the host file in one write
        # [_blank_start, _blank_end): sectors this object erased and has not written into since
        self._blank_start = self._blank_end = 0
        self.tear = tear
        self.on_cut = None
        self.trace = None
        self.ops = 0

    def close(self):
        self._f.close()

    def read(self, addr, buf):
        """Fill buf from addr."""
        self._f.seek(addr)
        got = self._f.readinto(buf)
        if got == len(buf):
            return
        mv = memoryview(buf)
        while got < len(mv):
            n = self._f.readinto(mv[got:])
            if not n:
                raise OSError(5, "flash file too short")
            got += n

    def _op(self, kind, addr, pages=1):
        """Count one operation, or `pages` page programs from addr on; True when the planned cut
        falls inside it (a caller counting several pages has made sure it falls after them)."""
        self.ops += pages
        if self.trace is not None:
            for page in range(addr - addr % PAGE, addr + pages * PAGE - addr % PAGE, PAGE):
                self.trace(kind, max(page, addr))
        tear = self.tear
        if tear is None:
            return False
        if tear.left >= pages:
            tear.left -= pages
            return False
        return True

    def _cut(self, kind, addr):
        self.tear = None
        if self.on_cut is not None:
            self.on_cut(kind, addr)
        raise PowerCut("%s 0x%x" % (kind, addr))

    def write(self, addr, data):
        """Program data at addr one NOR page at a time: new = old AND data. Each page program
        is counted (and traced) as one operation, so a planned cut lands inside any of them."""
        data = memoryview(data)
        if not len(data):
            return
        pages = (addr % PAGE + len(data) + PAGE - 1) // PAGE
        tear = self.tear
        end = addr + len(data)
        if (tear is None or tear.left >= pages) and self._blank_start <= addr and end <= self._blank_end:
            # No cut inside this write and every byte erased by this object since: each page
            # becomes its data, so the pages go to the host file in one write (the simulator's
            # cost, not the chip's). Only the blank part after the write stays known as blank.
            self._blank_start = end
            self._op("p", addr, pages)
            self._f.seek(addr)
            self._f.write(data)
            return
        if addr < self._blank_end and self._blank_start < end:
            self._blank_start = self._blank_end = 0
        done = 0
        while done < len(data):
            n = min(PAGE - (addr + done) % PAGE, len(data) - done)
            old = memoryview(self._page)[:n]
            self.read(addr + done, old)
            chunk = data[done:done + n]
            torn = self._op("p", addr + done)
            if torn or old != memoryview(self._erased)[:n]:
                new = int.from_bytes(old, "big") & int.from_bytes(chunk, "big")
                if torn:  # only some of the bits that should go to 0 got there
                    cleared = int.from_bytes(old, "big") & ~new
                    new = int.from_bytes(old, "big") & ~(cleared & int.from_bytes(self.tear.mask(n), "big"))
                chunk = new.to_bytes(n, "big")
            self._f.seek(addr + done)
            self._f.write(chunk)
            if torn:
                self._cut("p", addr + done)
            done += n

    def erase(self, addr, size):
        """Set whole sectors to 0xFF (addr and size are sector multiples)."""
        for sector in range(addr, addr + size, SECTOR):
            if self._op("e", sector):
                self._tear_erase(sector)
            self._f.seek(sector)
            self._f.write(self._erased)
            if self._blank_end != sector or self._blank_start >= self._blank_end:
                self._blank_start = sector
            self._blank_end = sector + SECTOR

    def _tear_erase(self, sector):
        """A sector erase cut short: some bits of it are 1 already, the rest as they were."""
        for page in range(sector, sector + SECTOR, PAGE):
            old = memoryview(self._page)
            self.read(page, old)
            mixed = int.from_bytes(old, "big") | int.from_bytes(self.tear.mask(PAGE), "big")
            self._f.seek(page)
            self._f.write(mixed.to_bytes(PAGE, "big"))
        self._cut("e", sector)


class PartitionIO:
    """esp_partition_read/write/erase_range on one table row, with ESP-IDF's argument checks."""

    def __init__(self, flash, row):
        self.flash = flash
        self.row = row
        self.address = row[3]
        self.size = row[4]

    def _check(self, offset, size):
        if offset < 0 or offset > self.size:
            raise esp_error(ESP_ERR_INVALID_ARG)
        if size > self.size - offset:
            raise esp_error(ESP_ERR_INVALID_SIZE)

    def read(self, offset, buf):
        self._check(offset, len(buf))
        self.flash.read(self.address + offset, buf)

    def write(self, offset, data):
        self._check(offset, len(data))
        self.flash.write(self.address + offset, data)

    def erase_range(self, offset, size):
        self._check(offset, size)
        if size % SECTOR:
            raise esp_error(ESP_ERR_INVALID_SIZE)
        if offset % SECTOR:
            raise esp_error(ESP_ERR_INVALID_ARG)
        self.flash.erase(self.address + offset, size)
