"""The ESP32 app image check of ESP-IDF's esp_image_verify(), over a partition.

Shared by the device's `set_boot()` (app mode) and the host bootloader (boot mode, which also
checks that segments load into ESP32 memory). Raises ValueError with the reason on failure.
"""
import hashlib
import struct


_STEP = 256  # bytes read at a time while checking
IMAGE_MAGIC = 0xE9
HEADER_FORMAT = "<BBBBIB3sHBHH4sB"
HEADER_SIZE = 24
MAX_SEGMENTS = 16
APP_DESC_MAGIC = 0xABCD5432
CHIP_ID_ESP32 = 0
CHIP_REVISION = 301  # the simulated chip is an ESP32 v3.1
MMU_PAGE = 0x10000
_SIXTEEN_MB = 0x1000000
_DROM = (0x3F400000, 0x3F800000)
_IROM = (0x400D0000, 0x40400000)
# Where an ESP32 bootloader can load segments: DROM, IROM, DRAM, IRAM, RTC fast/slow memory.
_LOADABLE = (_DROM, _IROM, (0x3FFAE000, 0x40000000), (0x40070000, 0x400A0000),
             (0x3FF80000, 0x3FF82000), (0x400C0000, 0x400C2000), (0x50000000, 0x50002000))


def _within(addr, end, regions):
    for low, high in regions:
        if low <= addr and end <= high:
            return True
    return False


def parse_header(io):
    """The 24-byte image header at the start of the partition, as a tuple."""
    raw = bytearray(HEADER_SIZE)
    io.read(0, raw)
    return struct.unpack(HEADER_FORMAT, raw)


def segments(io, header):
    """[(load_addr, data_offset, data_len), ...] following the header; raises ValueError."""
    count = header[1]
    if count > MAX_SEGMENTS:
        raise ValueError("%d segments" % count)
    found = []
    seg = bytearray(8)
    pos = HEADER_SIZE
    for i in range(count):
        if pos + 8 > io.size:
            raise ValueError("segment %d header beyond the partition" % i)
        io.read(pos, seg)
        load, length = struct.unpack("<II", seg)
        if length % 4 or length >= _SIXTEEN_MB:
            raise ValueError("segment %d length %d" % (i, length))
        if pos + 8 + length > io.size:
            raise ValueError("segment %d beyond the partition" % i)
        found.append((load, pos + 8, length))
        pos += 8 + length
    return found


def verify(io, boot=False, validate=True):
    """Check the image in the partition behind io; return its length (hash included).

    `boot` adds the bootloader's load-address check; `validate=False` is the deep-sleep fast
    boot, which parses the header and segments but skips the checksum and the hash."""
    header = parse_header(io)
    magic, count, hash_appended = header[0], header[1], header[12]
    if magic != IMAGE_MAGIC:
        raise ValueError("bad magic 0x%02x" % magic)
    if header[7] != CHIP_ID_ESP32:
        raise ValueError("image is for chip id %d" % header[7])
    min_rev, max_rev = header[9], header[10]
    if CHIP_REVISION < min_rev or (max_rev not in (0, 0xFFFF) and CHIP_REVISION > max_rev):
        raise ValueError("chip revision outside v%d.%d..v%d.%d" % (
            min_rev // 100, min_rev % 100, max_rev // 100, max_rev % 100))
    segs = segments(io, header)
    for load, offset, length in segs:
        if _within(load, load + 1, (_DROM, _IROM)) and offset % MMU_PAGE != load % MMU_PAGE:
            raise ValueError("segment at 0x%x not aligned with its flash page" % load)
        if boot and not _within(load, load + length, _LOADABLE):
            raise ValueError("segment load address 0x%x is not ESP32 memory" % load)
    end = segs[-1][1] + segs[-1][2] if segs else HEADER_SIZE
    if not validate:
        return end
    checksum = 0xEF
    # esp_image_verify() works in C on the IDF heap, not MicroPython's: a small buffer keeps the
    # simulator from asking the device's heap for a block the real set_boot() never takes.
    buf = bytearray(_STEP)
    for load, offset, length in segs:
        done = 0
        while done < length:
            n = min(_STEP, length - done)
            mv = memoryview(buf)[:n]
            io.read(offset + done, mv)
            for b in mv:
                checksum ^= b
            done += n
    length = (end + 16) & ~15  # zero padding, then the checksum byte as the last of 16
    if length > io.size:
        raise ValueError("checksum beyond the partition")
    one = bytearray(1)
    io.read(length - 1, one)
    if one[0] != checksum:
        raise ValueError("checksum 0x%02x, calculated 0x%02x" % (one[0], checksum))
    if hash_appended == 1:
        if length + 32 > io.size:
            raise ValueError("image does not fit the partition")
        h = hashlib.sha256()
        done = 0
        while done < length:
            n = min(_STEP, length - done)
            mv = memoryview(buf)[:n]
            io.read(done, mv)
            h.update(mv)
            done += n
        stored = bytearray(32)
        io.read(length, stored)
        if h.digest() != stored:
            raise ValueError("SHA-256 does not match")
        length += 32
    return length
