"""Is this the right kind of ESP32 image? Checked on the host before anything is signed or flashed.

Two kinds of file look alike (both start with the image magic 0xE9):

- an **app image** (`micropython.bin`, the download page's `.app-bin`) goes into an OTA slot and is
  what a release carries. ESP-IDF's esp_image_verify() (bootloader_support/src/esp_image_format.c)
  is what the board runs on it before switching slots: header, segments, the XOR checksum, the
  appended SHA-256; and the app descriptor (esp_app_desc_t, magic 0xABCD5432) opens segment 0.
- a **full flash image** (`ESP32_GENERIC-OTA.bin`) is written once over serial at the chip's
  bootloader offset (0x1000 on the ESP32): the bootloader, then at 0x8000 in flash the partition
  table (entries of esp_partition_info_t, magic 0x50AA little endian, from
  esp_flash_partitions.h), then the app at its slot's offset.

Each check raises ImageError with a sentence that says what the file is and what to use instead.
"""
import csv
import hashlib
import struct
from pathlib import Path

IMAGE_MAGIC = 0xE9
HEADER = struct.Struct("<BBBBIB3sHBHH4sB")  # esp_image_header_t
SEGMENT = struct.Struct("<II")  # esp_image_segment_header_t: load address, length
MAX_SEGMENTS = 16
APP_DESC_MAGIC = b"\x32\x54\xcd\xab"  # 0xABCD5432, at offset 32: segment 0's first word
CHECKSUM_SEED = 0xEF
PARTITION_TABLE_AT = 0x8000  # CONFIG_PARTITION_TABLE_OFFSET, in flash
PARTITION_ENTRY = struct.Struct("<2sBBII16sI")  # esp_partition_info_t
PARTITION_MAGIC = b"\xaa\x50"
MD5_MAGIC = b"\xeb\xeb"
APP, DATA = 0, 1
OTA_0, OTA_1, OTADATA = 0x10, 0x11, 0x00
# Flash size code in the bootloader header's byte 3, high nibble (esp_image_flash_size_t).
FLASH_SIZES = {0: 1 << 20, 1: 2 << 20, 2: 4 << 20, 3: 8 << 20, 4: 16 << 20, 5: 32 << 20, 6: 64 << 20, 7: 128 << 20}
PARTITIONS_CSV = Path(__file__).resolve().parents[1] / "boards" / "esp32" / "partitions-4MiB-ota.csv"
APP_NOT_FULL = ("%s is an app image (what a release carries), not a full firmware: flash the OTA build's "
                "full image (e.g. ESP32_GENERIC-OTA.bin from micropython.org)")


class ImageError(ValueError):
    """The file is not the kind of image this step needs; the message says what to use."""


def default_slot_size():
    """The app slot size of the OTA partition table the project targets (ota_0's size)."""
    with open(PARTITIONS_CSV) as f:
        rows = [[c.strip() for c in row] for row in csv.reader(line for line in f if not line.startswith("#"))]
    return next(int(row[4], 0) for row in rows if row and row[0] == "ota_0")


def image_length(data, name):
    """The length of the ESP image at the start of `data` (segments, checksum, appended hash),
    after the checks esp_image_verify() makes on it; ImageError when one fails."""
    if len(data) < HEADER.size or data[0] != IMAGE_MAGIC:
        raise ImageError("%s is not an ESP32 image (it does not start with the image magic 0xE9)" % name)
    header = HEADER.unpack_from(data)
    count, hash_appended = header[1], header[12]
    if not 1 <= count <= MAX_SEGMENTS:
        raise ImageError("%s is not an ESP32 image (%d segments)" % (name, count))
    pos, checksum = HEADER.size, CHECKSUM_SEED
    for i in range(count):
        if pos + SEGMENT.size > len(data):
            raise ImageError("%s is truncated (segment %d header missing)" % (name, i))
        length = SEGMENT.unpack_from(data, pos)[1]
        pos += SEGMENT.size
        if length % 4 or pos + length > len(data):
            raise ImageError("%s is truncated or corrupt (segment %d)" % (name, i))
        for b in data[pos:pos + length]:
            checksum ^= b
        pos += length
    pos += 15 - pos % 16
    if pos >= len(data) or data[pos] != checksum:
        raise ImageError("%s is corrupt (image checksum does not match)" % name)
    pos += 1
    if hash_appended:
        if data[pos:pos + 32] != hashlib.sha256(data[:pos]).digest():
            raise ImageError("%s is corrupt (its appended SHA-256 does not match)" % name)
        pos += 32
    return pos


def check_app_image(data, slot_size, name="the image"):
    """Refuse what the board would refuse after the download: not an app image, or too large."""
    if data[:1] == bytes([IMAGE_MAGIC]) and partition_table_at(data, 0x1000) is not None:
        raise ImageError("%s is a full flash image (bootloader and partition table): a release carries only the "
                         "app image (micropython.bin, the download page's .app-bin)" % name)
    image_length(data, name)
    if data[HEADER.size + SEGMENT.size:HEADER.size + SEGMENT.size + 4] != APP_DESC_MAGIC:
        raise ImageError("%s is an ESP32 image without an app descriptor (a bootloader?): a release carries "
                         "the app image (micropython.bin)" % name)
    if len(data) > slot_size:
        raise ImageError("%s is %d bytes, larger than the %d-byte app slot: the board would refuse it (too_large)"
                         % (name, len(data), slot_size))


def partition_table_at(data, flash_offset):
    """The partition entries [(type, subtype, offset, size, label)] in a full image written at
    `flash_offset`, or None when there is no table at 0x8000 in flash."""
    at = PARTITION_TABLE_AT - flash_offset
    if data[at:at + 2] != PARTITION_MAGIC:
        return None
    entries = []
    while at + PARTITION_ENTRY.size <= len(data):
        magic, ptype, subtype, offset, size, label, _ = PARTITION_ENTRY.unpack_from(data, at)
        if magic != PARTITION_MAGIC:  # the MD5 entry or the erased end
            break
        entries.append((ptype, subtype, offset, size, label.rstrip(b"\0").decode(errors="replace")))
        at += PARTITION_ENTRY.size
    return entries


def check_full_image(data, flash_offset, name="the firmware"):
    """A full firmware for a first flash at `flash_offset`: a bootloader there, a partition table
    at 0x8000 with otadata and two app slots that fit the flash size the bootloader declares, and
    an app image in ota_0 that fits it. Returns the app slot size."""
    if data[:1] != bytes([IMAGE_MAGIC]):
        raise ImageError("%s is not a full ESP32 firmware (no bootloader at its start)" % name)
    table = partition_table_at(data, flash_offset)
    if table is None:
        if data[HEADER.size + SEGMENT.size:HEADER.size + SEGMENT.size + 4] == APP_DESC_MAGIC:
            raise ImageError(APP_NOT_FULL % name)
        raise ImageError("%s has no partition table at 0x%x in flash: not a full firmware image"
                         % (name, PARTITION_TABLE_AT))
    if data[HEADER.size + SEGMENT.size:HEADER.size + SEGMENT.size + 4] == APP_DESC_MAGIC:
        raise ImageError(APP_NOT_FULL % name)
    image_length(data, name + "'s bootloader")
    flash_size = FLASH_SIZES.get(data[3] >> 4)
    slots = {sub: (off, size) for ptype, sub, off, size, _ in table if ptype == APP and sub in (OTA_0, OTA_1)}
    if len(slots) != 2 or not any(t == DATA and s == OTADATA for t, s, *_ in table):
        raise ImageError("%s's partition table has no otadata and two OTA app slots (ota_0, ota_1): flash the "
                         "OTA build (ESP32_GENERIC-OTA), the standard one cannot update itself" % name)
    for sub, (off, size) in sorted(slots.items()):
        if flash_size is None or off + size > flash_size:
            raise ImageError("%s's app slot ota_%d (0x%x + 0x%x) does not fit the %s flash the bootloader declares"
                             % (name, sub - OTA_0, off, size, "%d MiB" % (flash_size >> 20) if flash_size else "unknown"))
    if slots[OTA_0][1] != slots[OTA_1][1]:
        raise ImageError("%s's app slots differ in size: a release must fit both" % name)
    app_at, slot_size = slots[OTA_0][0] - flash_offset, slots[OTA_0][1]
    app = data[app_at:]
    if not app:
        raise ImageError("%s holds no app at ota_0 (0x%x in flash)" % (name, slots[OTA_0][0]))
    check_app_image(app[:image_length(app, name + "'s app")], slot_size, name + "'s app")
    return slot_size
