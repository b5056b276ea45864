"""Synthetic but valid ESP32 app images for the simulator and the tests.

An image is what esptool writes into an OTA slot: the 24-byte header, one DROM segment, the
checksum byte and the appended SHA-256. The segment starts with a real `esp_app_desc_t`, then
holds a module archive standing in for the firmware's frozen modules:

    b"MPFZ", <B label_len> label, <H count>, then per module <H name_len> <I source_len> name source

then deterministic filler up to the requested size. The simulator's supervisor runs the archive's
modules as the firmware; `_boot`, if present, runs first as on the real port.

The descriptor's version and project name are empty by default, as in official MicroPython builds
(their build sets neither), so nothing may rely on them; the label names the image for the
simulator's boot log and the tests only.
"""
import hashlib
import random
import struct

IMAGE_MAGIC = 0xE9
HEADER = struct.Struct("<BBBBIB3sHBHH4sB")
SEGMENT = struct.Struct("<II")
APP_DESC = struct.Struct("<II8s32s32s16s16s32s32sHHB3s72s")
APP_DESC_MAGIC = 0xABCD5432
DROM_ADDR = 0x3F400020  # the flash offset of segment 0's data (0x20) modulo the 64 KiB MMU page
ENTRY_ADDR = 0x40081000
ARCHIVE_MAGIC = b"MPFZ"
FIRST_SEGMENT_AT = HEADER.size + SEGMENT.size


def _app_desc(version, project_name, secure_version, modules_digest):
    encoded = version.encode()
    if len(encoded) > 31 or len(project_name.encode()) > 31:
        raise ValueError("version %r or project name %r is longer than 31 bytes" % (version, project_name))
    return APP_DESC.pack(APP_DESC_MAGIC, secure_version, b"", encoded, project_name.encode(), b"00:00:00",
                         b"Jan  1 2026", b"v5.5.2", modules_digest, 0, 99, 16, b"", b"")


def _archive(label, modules):
    raw_label = label.encode()
    if len(raw_label) > 255:
        raise ValueError("label %r is longer than 255 bytes" % label)
    out = [ARCHIVE_MAGIC, struct.pack("<B", len(raw_label)), raw_label, struct.pack("<H", len(modules))]
    for name in sorted(modules):
        raw_name, source = name.encode(), modules[name].encode()
        out += [struct.pack("<HI", len(raw_name), len(source)), raw_name, source]
    return b"".join(out)


def build_image(label, modules, *, size=None, secure_version=0, app_version="", project_name=""):
    """An ESP32 app image of `size` bytes (a multiple of 16; default: as small as possible)
    whose firmware is `modules` (module name -> source text). `label` names it in the
    simulator's boot log; `app_version` and `project_name` go into the app descriptor."""
    archive = _archive(label, modules)
    payload = _app_desc(app_version, project_name, secure_version, hashlib.sha256(archive).digest()) + archive
    payload += b"\0" * (-len(payload) % 4)
    if size is None:
        seg_len = len(payload)
    else:
        if size % 16:
            raise ValueError("image size must be a multiple of 16")
        seg_len = size - FIRST_SEGMENT_AT - 16 - 32
        if seg_len < len(payload):
            raise ValueError("image size %d is too small for %d bytes of modules" % (size, len(archive)))
    filler = random.Random(label).randbytes(seg_len - len(payload))
    segment = payload + filler
    header = HEADER.pack(IMAGE_MAGIC, 1, 2, 0x20, ENTRY_ADDR, 0xEE, b"\0\0\0", 0, 0, 0, 399, b"", 1)
    body = bytearray(header + SEGMENT.pack(DROM_ADDR, seg_len) + segment)
    checksum = 0xEF
    for b in segment:
        checksum ^= b
    body += b"\0" * (15 - len(body) % 16)
    body.append(checksum)
    return bytes(body + hashlib.sha256(body).digest())


def _segment0(data):
    if len(data) < FIRST_SEGMENT_AT + APP_DESC.size or data[0] != IMAGE_MAGIC:
        raise ValueError("not an ESP32 app image")
    length = SEGMENT.unpack_from(data, HEADER.size)[1]
    if length < APP_DESC.size or FIRST_SEGMENT_AT + length > len(data):
        raise ValueError("not an ESP32 app image")
    return memoryview(data)[FIRST_SEGMENT_AT:FIRST_SEGMENT_AT + length]


def read_app_desc(data):
    """(secure_version, version, project_name) from an image or a whole partition's bytes."""
    fields = APP_DESC.unpack_from(_segment0(data))
    if fields[0] != APP_DESC_MAGIC:
        raise ValueError("no app descriptor")
    text = lambda raw: raw.split(b"\0", 1)[0].decode(errors="replace")  # noqa: E731
    return fields[1], text(fields[3]), text(fields[4])


def read_app_version(data):
    """The version string of the image in `data` (an image or a whole partition's bytes)."""
    return read_app_desc(data)[1]


def _archive_start(data):
    """(segment 0, offset of the label's length byte) of the module archive in `data`."""
    seg = _segment0(data)
    if bytes(seg[APP_DESC.size:APP_DESC.size + 4]) != ARCHIVE_MAGIC:
        raise ValueError("the image carries no module archive")
    return seg, APP_DESC.size + 4


def read_label(data):
    """The label the image was built with (an image or a whole partition's bytes)."""
    seg, pos = _archive_start(data)
    return bytes(seg[pos + 1:pos + 1 + seg[pos]]).decode()


def read_modules(data):
    """The firmware's modules (name -> source text) carried by the image in `data`."""
    seg, pos = _archive_start(data)
    pos += 1 + seg[pos]
    (count,) = struct.unpack_from("<H", seg, pos)
    pos += 2
    modules = {}
    for _ in range(count):
        name_len, source_len = struct.unpack_from("<HI", seg, pos)
        pos += 6
        name = bytes(seg[pos:pos + name_len]).decode()
        pos += name_len
        if pos + source_len > len(seg):
            raise ValueError("module archive truncated")
        modules[name] = bytes(seg[pos:pos + source_len]).decode()
        pos += source_len
    return modules


# Firmware behaviours for simulated boards: the module `fw` that boards/unix/sim_main.py asks
# whether the hardware works, so a release can be built to pass or fail its trial.
FW_HEALTHY = "def start():\n    pass\n\ndef healthy():\n    return True\n"
FW_UNHEALTHY = "def start():\n    pass\n\ndef healthy():\n    return False\n"
