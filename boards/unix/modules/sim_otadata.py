"""ESP-IDF's otadata partition, byte for byte, and the rules that read and write it (v5.5.2,
rollback enabled). Shared by the device's esp32 module and the host bootloader.

Two 32-byte entries `<I seq, 20s label, I state, I crc>` at offsets 0 and 0x1000 of otadata;
crc = crc32_le(0xFFFFFFFF, seq). The active entry is the valid one with the larger seq, and it
selects OTA slot (seq - 1) % slot_count.
"""
import binascii
import struct

from sim_flash import ESP_FAIL, ESP_ERR_INVALID_ARG, ESP_ERR_NOT_FOUND, SECTOR, esp_error

NEW = 0
PENDING_VERIFY = 1
VALID = 2
INVALID = 3
ABORTED = 4
UNDEFINED = 0xFFFFFFFF
STATE_NAMES = {NEW: "NEW", PENDING_VERIFY: "PENDING_VERIFY", VALID: "VALID", INVALID: "INVALID",
               ABORTED: "ABORTED", UNDEFINED: "UNDEFINED"}

ENTRY_FORMAT = "<I20sII"
ENTRY_SIZE = 32
BLANK_SEQ = 0xFFFFFFFF
FACTORY = -1  # the bootloader's FACTORY_INDEX


def crc(seq):
    """bootloader_common_ota_select_crc(): CRC-32 of the little-endian seq, seeded with ~0."""
    return binascii.crc32(struct.pack("<I", seq), 0xFFFFFFFF) & 0xFFFFFFFF


def decode(raw):
    """One entry as a list [seq, label, state, crc]."""
    return list(struct.unpack(ENTRY_FORMAT, raw))


def encode(entry):
    return struct.pack(ENTRY_FORMAT, entry[0], entry[1], entry[2], entry[3])


def is_invalid(entry):
    """bootloader_common_ota_select_invalid(): blank, INVALID or ABORTED."""
    return entry[0] == BLANK_SEQ or entry[2] in (INVALID, ABORTED)


def is_valid(entry):
    return not is_invalid(entry) and entry[3] == crc(entry[0])


def _blank_or_bad_crc(entry):
    return entry[0] == BLANK_SEQ or entry[3] != crc(entry[0])


def active(entries):
    """bootloader_common_get_active_otadata(): index of the active entry, or -1."""
    v0, v1 = is_valid(entries[0]), is_valid(entries[1])
    if v0 and v1:
        return 0 if max(entries[0][0], entries[1][0]) == entries[0][0] else 1
    return 0 if v0 else 1 if v1 else -1


def read(io):
    """Both entries of the otadata partition behind io (a sim_flash.PartitionIO)."""
    buf = bytearray(ENTRY_SIZE)
    entries = []
    for i in (0, 1):
        io.read(i * SECTOR, buf)
        entries.append(decode(buf))
    return entries


def write(io, index, entry):
    """rewrite_ota_seq() (the app side): a fresh CRC, then `program`."""
    entry[3] = crc(entry[0])
    program(io, index, entry)


def program(io, index, entry):
    """The bootloader's write_otadata(): erase that entry's sector, then program the 32 bytes as
    they are (a torn CRC stays torn: the bootloader does not compute it again)."""
    io.erase_range(index * SECTOR, SECTOR)
    io.write(index * SECTOR, encode(entry))


def boot_slot(entries, slot_count):
    """esp_ota_get_boot_partition(): the OTA slot index otadata selects, or FACTORY."""
    if (is_invalid(entries[0]) and is_invalid(entries[1])) or slot_count == 0:
        return FACTORY
    i = active(entries)
    return FACTORY if i < 0 else (entries[i][0] - 1) % slot_count


def set_boot(io, slot, slot_count):
    """esp_rewrite_ota_data() as in v5.5.2: write the other sector with the smallest
    seq >= the active one that maps to `slot`, in state NEW."""
    if io is None:
        raise esp_error(ESP_ERR_NOT_FOUND)
    if slot >= slot_count:
        raise esp_error(ESP_ERR_INVALID_ARG)
    entries = read(io)
    i = active(entries)
    base = (slot + 1) % slot_count
    if i < 0:
        target, seq = 0, slot + 1
    else:
        k = 0
        while entries[i][0] > base + k * slot_count:
            k += 1
        target, seq = 1 - i, base + k * slot_count
    entries[target][0] = seq
    entries[target][2] = NEW
    write(io, target, entries[target])


def mark_valid(io, slot_count):
    """esp_ota_mark_app_valid_cancel_rollback(): the active entry becomes VALID."""
    if io is None:
        raise esp_error(ESP_ERR_NOT_FOUND)
    entries = read(io)
    i = active(entries)
    if i < 0 or slot_count == 0:
        raise esp_error(ESP_FAIL)  # "Running firmware is factory"
    if entries[i][2] != VALID:
        entries[i][2] = VALID
        write(io, i, entries[i])


def bootloader_select(io, slot_count, has_factory):
    """bootloader_utility_get_selected_boot_partition() with rollback enabled.

    Returns (index, initial): index is an OTA slot or FACTORY; initial says otadata was blank,
    so the slot that loads must be recorded with set_actual_seq()."""
    entries = read(io)
    for i in (0, 1):
        if entries[i][2] == PENDING_VERIFY:
            entries[i][2] = ABORTED
            program(io, i, entries[i])
    if (is_invalid(entries[0]) and is_invalid(entries[1])) or slot_count == 0:
        if has_factory:
            return FACTORY, False
        return 0, _blank_or_bad_crc(entries[0]) and _blank_or_bad_crc(entries[1])
    i = active(entries)
    if i < 0:
        return FACTORY, False
    if entries[i][2] == NEW:
        entries[i][2] = PENDING_VERIFY
        program(io, i, entries[i])
    return (entries[i][0] - 1) % slot_count, False


def set_actual_seq(io, slot):
    """set_actual_ota_seq(): after booting from blank otadata, sector 0 = (slot+1, VALID)."""
    write(io, 0, [slot + 1, b"\xff" * 20, VALID, 0])
