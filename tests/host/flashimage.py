"""Full ESP32 flash images for the provisioning checks, laid out as MicroPython's OTA build writes
ESP32_GENERIC-OTA.bin (written at 0x1000): bootloader, partition table at 0x8000, app at 0x10000."""
import hashlib

from mpota import fwimage, imagecheck

FLASH_4MB = 2


def esp_image(segment, flash_size_code=FLASH_4MB):
    """An ESP image with one segment (no app descriptor unless `segment` starts with one)."""
    segment += b"\0" * (-len(segment) % 4)
    header = imagecheck.HEADER.pack(0xE9, 1, 2, flash_size_code << 4 | 0x0F, 0x40080400, 0xEE, b"\0\0\0", 0, 0, 0,
                                    399, b"", 1)
    body = bytearray(header + imagecheck.SEGMENT.pack(0x3FFF0000, len(segment)) + segment)
    checksum = imagecheck.CHECKSUM_SEED
    for b in segment:
        checksum ^= b
    body += b"\0" * (15 - len(body) % 16)
    body.append(checksum)
    return bytes(body + hashlib.sha256(body).digest())


def table(slots=((0x10, 0x10000, 0x180000), (0x11, 0x190000, 0x180000)), otadata=True):
    rows = [(1, 0x02, 0x9000, 0x4000, b"nvs")]
    if otadata:
        rows.append((1, 0x00, 0xD000, 0x2000, b"otadata"))
    rows += [(0, sub, off, size, b"ota_%d" % (sub - 0x10)) for sub, off, size in slots]
    raw = b"".join(imagecheck.PARTITION_ENTRY.pack(b"\xaa\x50", *row, 0) for row in rows)
    return raw + imagecheck.MD5_MAGIC + b"\xff" * 14 + hashlib.md5(raw).digest()


def full_image(app=None, *, partitions=None, flash_size_code=FLASH_4MB, flash_offset=0x1000):
    """bootloader | partition table at 0x8000 | app at 0x10000 (in flash), for writing at `flash_offset`."""
    out = bytearray(esp_image(b"bootloader" * 100, flash_size_code))
    out += b"\xff" * (0x8000 - flash_offset - len(out))
    out += partitions if partitions is not None else table()
    out += b"\xff" * (0x10000 - flash_offset - len(out))
    out += app if app is not None else fwimage.build_image("1.24.0", {})
    return bytes(out)
