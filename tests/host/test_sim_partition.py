"""esp32.Partition in the simulator behaves as the ESP32 port does (no boot loop needed)."""
import binascii
import hashlib
import struct

import pytest

from plugin_sim import blank_flash, partition

OTADATA = partition("otadata")[3]
OTA_0, OTA_1 = partition("ota_0"), partition("ota_1")
SLOT = OTA_1[4]


def expected_entry(seq, state, label=b"\xff" * 20):
    """An otadata entry encoded independently of the simulator."""
    return struct.pack("<I20sII", seq, label, state, binascii.crc32(struct.pack("<I", seq), 0xFFFFFFFF))


def flash_at(flash, addr, n):
    with open(flash, "rb") as f:
        f.seek(addr)
        return f.read(n)


def write_into(flash, label, data):
    with open(flash, "r+b") as f:
        f.seek(partition(label)[3])
        f.write(data)


def test_table_info_find_and_constructor(sim_snippet):
    out = sim_snippet("""
import esp32
P = esp32.Partition
print([p.info() for p in P.find()])
print([p.info()[4] for p in P.find(P.TYPE_DATA)])
print([p.info()[4] for p in P.find(P.TYPE_APP, 0x11)], P.find(P.TYPE_APP, label='nvs'))
print(P('nvs').info(), P(P.RUNNING).info()[4], repr(P('ota_1')))
print(P.BOOT, P.RUNNING, P.TYPE_APP, P.TYPE_DATA)
for bad in (2, -1):
    try:
        P(bad)
    except ValueError:
        print('ValueError')
try:
    P('nope')
except OSError as e:
    print('OSError', e.errno)
print(P(P.BOOT).info()[4])
""", running="ota_1").stdout.splitlines()
    assert out[0] == "[(0, 16, 65536, 1572864, 'ota_0', False), (0, 17, 1638400, 1572864, 'ota_1', False)]"
    # the port's start-up adds "vfs" after the table's last partition, up to the end of flash
    assert out[1] == "['nvs', 'otadata', 'phy_init', 'vfs']"
    assert out[2] == "['ota_1'] []"
    assert out[3] == ("(1, 2, 36864, 16384, 'nvs', False) ota_1 "
                      "<Partition type=0, subtype=17, address=1638400, size=1572864, label=ota_1, encrypted=0>")
    assert out[4] == "0 1 0 1"
    # BOOT with no valid otadata entry and no factory app: find_default_boot_partition() is ota_0
    assert out[5:] == ["ValueError", "ValueError", "OSError 2", "ota_0"]


def test_ioctl_values(sim_snippet):
    out = sim_snippet("""
import esp32
p = esp32.Partition('ota_0')
print([p.ioctl(c, 0) for c in (1, 2, 3, 4, 5, 6, 7)])
q = esp32.Partition('ota_0', 512)
print([q.ioctl(c, 0) for c in (4, 5, 6)], esp32.Partition.find(block_size=512)[0].ioctl(5, 0))
""").stdout.splitlines()
    assert out == ["[0, 0, 0, 384, 4096, 0, None]", "[3072, 512, -22] 512"]


def test_three_arg_write_erases_four_arg_write_only_clears_bits(sim_snippet):
    flash = blank_flash(sim_snippet.flash)
    sim_snippet("""
import esp32
p = esp32.Partition('ota_1')
p.writeblocks(1, b'\\x0f' * 4096)          # erase + program
p.writeblocks(1, b'\\xf0' * 16, 32)        # no erase: 0x0f AND 0xf0 = 0
p.writeblocks(2, b'\\x0f' * 8192)
p.writeblocks(2, b'\\x5a' * 4096)          # erases block 2 only, block 3 keeps 0x0f
p.writeblocks(3, bytes(range(256)) * 16, 0) # no erase even at offset 0
p.ioctl(6, 5)
p.writeblocks(5, b'\\xaa', 7)
buf = bytearray(4)
p.readblocks(1, buf, 30)
print(bytes(buf))
""")
    base = OTA_1[3]
    assert flash_at(flash, base + 4096, 32) == b"\x0f" * 32
    assert flash_at(flash, base + 4096 + 32, 16) == b"\x00" * 16
    assert flash_at(flash, base + 4096 + 48, 4096 - 48) == b"\x0f" * (4096 - 48)
    assert flash_at(flash, base + 2 * 4096, 4096) == b"\x5a" * 4096
    assert flash_at(flash, base + 3 * 4096, 4096) == bytes(b & 0x0F for b in range(256)) * 16
    assert flash_at(flash, base + 5 * 4096, 9) == b"\xff" * 7 + b"\xaa\xff"
    assert flash_at(flash, base, 4096) == b"\xff" * 4096  # neighbours untouched
    assert flash_at(flash, base + 6 * 4096, 4096) == b"\xff" * 4096


def test_write_errors_are_the_ports(sim_snippet):
    out = sim_snippet("""
import esp32
p = esp32.Partition('ota_1')
def show(f, *a):
    try:
        f(*a)
        print('ok')
    except OSError as e:
        print(e.args)
show(p.writeblocks, 0, b'x' * 100)      # erase length not a multiple of 4096
show(p.writeblocks, 400, b'x' * 4096)   # past the end of the partition
show(p.writeblocks, 383, b'x' * 8192)   # runs over the end
show(p.readblocks, 383, bytearray(8192))
show(p.writeblocks, 0, b'x' * 100, 5)   # 4-arg: any length is fine
show(p.ioctl, 6, 384)
""").stdout.splitlines()
    assert out == ["(-260, 'ESP_ERR_INVALID_SIZE')", "(-258, 'ESP_ERR_INVALID_ARG')",
                   "(-260, 'ESP_ERR_INVALID_SIZE')", "(-260, 'ESP_ERR_INVALID_SIZE')", "ok",
                   "(-260, 'ESP_ERR_INVALID_SIZE')"]


def test_small_block_size_keeps_the_rest_of_the_sector(sim_snippet):
    flash = blank_flash(sim_snippet.flash)
    sim_snippet("""
import esp32
p = esp32.Partition('ota_1', 512)
p.writeblocks(0, b'\\x11' * 4096, 0)
p.writeblocks(3, b'\\x22' * 1024)   # erases bytes 1536..2559 only
""")
    got = flash_at(flash, OTA_1[3], 4096)
    assert got == b"\x11" * 1536 + b"\x22" * 1024 + b"\x11" * 1536


def test_get_next_update_wraps(sim_snippet):
    out = sim_snippet("""
import esp32
P = esp32.Partition
print(P('ota_0').get_next_update().info()[4], P('ota_1').get_next_update().info()[4],
      P('nvs').get_next_update().info()[4], P(P.RUNNING).get_next_update().info()[4],
      P('ota_0', 512).get_next_update().ioctl(5, 0))
""", running="ota_1").stdout.split()
    assert out == ["ota_1", "ota_0", "ota_0", "ota_0", "4096"]


COPY_AND_SET_BOOT = """
import esp32
src = esp32.Partition('ota_0')
dst = esp32.Partition('ota_1')
buf = bytearray(4096)
for i in range(%d):
    src.readblocks(i, buf)
    dst.writeblocks(i, buf)
try:
    dst.set_boot()
    print('ok')
except OSError as e:
    print(e.args)
"""


def corrupt(image, offset, xor=0x01):
    out = bytearray(image)
    out[offset] ^= xor
    return bytes(out)


def rehash(image):
    return image[:-32] + hashlib.sha256(image[:-32]).digest()


def invalid_images(firmware):
    good = firmware("2.0.0", {"main_fw": "x = 1\n"}, size=8192)
    too_big = firmware("2.0.0", size=SLOT + 16)[:SLOT]
    with_header = lambda fmt_offset, value: rehash(good[:fmt_offset] + value + good[fmt_offset + len(value):])  # noqa: E731
    return {
        "checksum": rehash(corrupt(good, len(good) - 33)),
        "hash": corrupt(good, len(good) - 1),
        "data": corrupt(good, 4000),
        "magic": with_header(0, b"\xe8"),
        "chip": with_header(12, b"\x05\x00"),
        "segments": with_header(1, bytes([17])),
        "segment-length": with_header(28, struct.pack("<I", 8192 - 80 + 2)),
        "too-big": too_big,
    }


@pytest.mark.parametrize("kind", ["checksum", "hash", "data", "magic", "chip", "segments", "segment-length", "too-big"])
def test_set_boot_refuses_invalid_images(sim_snippet, firmware, kind):
    image = invalid_images(firmware)[kind]
    flash = blank_flash(sim_snippet.flash, image)
    before = flash_at(flash, OTADATA, 0x2000)
    out = sim_snippet(COPY_AND_SET_BOOT % min(384, len(image) // 4096 + 1)).stdout.strip()
    assert out == "(-5379, 'ESP_ERR_OTA_VALIDATE_FAILED')"
    assert flash_at(flash, OTADATA, 0x2000) == before


def test_set_boot_accepts_an_image_that_fills_the_slot(sim_snippet, firmware):
    image = firmware("3.0.0", size=SLOT)
    blank_flash(sim_snippet.flash, image)
    assert sim_snippet(COPY_AND_SET_BOOT % 384).stdout.strip() == "ok"


def test_otadata_bytes_match_esp_idf(sim_snippet, firmware):
    flash = blank_flash(sim_snippet.flash, firmware("1.0.0"))
    blank = b"\xff" * 32

    def sectors():
        return flash_at(flash, OTADATA, 32), flash_at(flash, OTADATA + 0x1000, 32)

    def snippet(code):
        return sim_snippet("import esp32\nP = esp32.Partition\n" + code).stdout

    assert sim_snippet(COPY_AND_SET_BOOT % 1).stdout.strip() == "ok"  # blank otadata: sector 0
    assert sectors() == (expected_entry(2, 0), blank)
    snippet("P.mark_app_valid_cancel_rollback()")  # marks the active entry
    assert sectors() == (expected_entry(2, 2), blank)
    snippet("P('ota_0').set_boot()")  # the other sector, smallest seq >= 2 mapping to ota_0
    assert sectors() == (expected_entry(2, 2), expected_entry(3, 0))
    snippet("P('ota_1').set_boot()")
    assert sectors() == (expected_entry(4, 0), expected_entry(3, 0))
    snippet("P('ota_1').set_boot()")  # v5.5.2: same slot again still writes the other sector
    assert sectors() == (expected_entry(4, 0), expected_entry(4, 0))
    assert snippet("print(P(P.BOOT).info()[4])").strip() == "ota_1"


def test_mark_app_valid_cancel_rollback_errors_and_no_op(sim_snippet, firmware, tmp_path):
    flash = blank_flash(sim_snippet.flash, firmware("1.0.0"))
    code = """
import esp32
try:
    esp32.Partition.mark_app_valid_cancel_rollback()
    print('ok')
except OSError as e:
    print(e.args)
"""
    # otadata present but no active entry: "Running firmware is factory" -> ESP_FAIL
    assert sim_snippet(code).stdout.strip() == "(1, 'ESP_FAIL')"
    write_into(flash, "otadata", expected_entry(1, 2))
    before = flash.read_bytes()
    assert sim_snippet(code).stdout.strip() == "ok"
    assert flash.read_bytes() == before  # already VALID: nothing is written
    table = tmp_path / "factory.csv"
    table.write_text("nvs, data, nvs, 0x9000, 0x6000,\nfactory, app, factory, 0x10000, 0x1F0000,\n")
    out = sim_snippet(code, env={"OTASIM_PARTITIONS": str(table)}, running="factory").stdout.strip()
    assert out == "(-261, 'ESP_ERR_NOT_FOUND')"
