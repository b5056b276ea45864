"""Read ESP-IDF's otadata: MicroPython has no API for the running image's rollback state.

Two 32-byte entries (`<I seq, 20s label, I state, I crc>`) at offsets 0 and 4096 of the otadata
partition; an entry counts when its CRC matches and its seq is set. The bootloader boots slot
(seq - 1) % 2 of the highest counting entry that is not INVALID or ABORTED."""
import struct
from binascii import crc32

from micropython import const

try:
    import esp32
except ImportError:  # rp2: no firmware slots, no otadata (app bundles only)
    esp32 = None  # type: ignore[assignment]

NEW = const(0)
PENDING_VERIFY = const(1)
VALID = const(2)
INVALID = const(3)
ABORTED = const(4)
UNDEFINED = const(0xFFFFFFFF)

_SECTOR = const(4096)  # the two copies sit one flash sector apart
_SLOTS = const(2)
_SUBTYPE_OTA0 = const(16)


def _entries():
    """[(seq, state)] for the entries whose CRC matches."""
    found = esp32 and esp32.Partition.find(esp32.Partition.TYPE_DATA, 0)
    if not found:
        return []
    part = found[0]
    buf = bytearray(32)
    out = []
    for sector in range(2):
        part.readblocks(0, buf, sector * _SECTOR)
        seq, _label, state, crc = struct.unpack("<I20sII", buf)
        if seq != 0xFFFFFFFF and crc == crc32(struct.pack("<I", seq), 0xFFFFFFFF):
            out.append((seq, state))
    return out


def slot_index(part):
    """0 for ota_0, 1 for ota_1 (None for a factory partition)."""
    subtype = part.info()[1]
    return subtype - _SUBTYPE_OTA0 if subtype >= _SUBTYPE_OTA0 else None


def newest(index=None):
    """(seq, state) of the newest entry (for OTA slot `index`, when given), or (0, None)."""
    best = (0, None)
    for seq, state in _entries():
        if (index is None or (seq - 1) % _SLOTS == index) and seq > best[0]:
            best = (seq, state)
    return best


def state_of(index):
    """The state the newest entry records for OTA slot `index`, or None."""
    return newest(index)[1]


def running_state():
    """State of the running slot: PENDING_VERIFY means this boot is a trial."""
    if esp32 is None:
        return None
    running = esp32.Partition(esp32.Partition.RUNNING)  # type: ignore[arg-type]  # stub: label only; RUNNING works
    index = slot_index(running)
    return None if index is None else state_of(index)
