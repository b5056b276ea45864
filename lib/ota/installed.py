"""Which signed release runs in each OTA slot: the device's own record, not the app descriptor.

Official MicroPython builds leave the descriptor's version and project name empty, so the version
and release id a device reports come from the signed manifest of the release it confirmed. Each
record names the otadata seq it was confirmed under: an image put in the slot some other way
(a cable, a later install) has another seq, and then the device reports no release. The record
`mpota provision --firmware-version` writes for the firmware it flashes has no seq (None)."""
from micropython import const

from ota import store

_NAME = "installed"
_APP_DESC_VERSION = const(48)  # image header 24 + segment header 8 + offset 16 in esp_app_desc_t
_VERSION_LEN = const(32)


def record(label, seq, release, version):
    """Remember what slot `label` runs since its otadata entry `seq` was confirmed."""
    slots = store.read_json(_NAME, {})
    slots[label] = [seq, release, version]
    store.write_json(_NAME, slots)


def of(part, seq):
    """(release, version) of the image in `part`, whose newest otadata entry has `seq`: the
    record when it matches, else (None, the descriptor's version or None when it is empty)."""
    entry = store.read_json(_NAME, {}).get(part.info()[4])
    if entry and entry[0] in (None, seq):
        return entry[1], entry[2]
    return None, app_version(part) or None


def app_version(part):
    """The version string in the app descriptor of the image in `part` (None if not an image)."""
    buf = bytearray(_APP_DESC_VERSION + _VERSION_LEN)
    part.readblocks(0, buf)
    if buf[0] != 0xE9 or buf[32:36] != b"\x32\x54\xcd\xab":
        return None
    raw = bytes(buf[_APP_DESC_VERSION:])
    end = raw.find(b"\x00")
    return (raw if end < 0 else raw[:end]).decode()


def moved(label, old_seq, new_seq):
    """The image in slot `label` is booted again under a new otadata entry (set_boot() on a
    slot whose image did not change): its record follows, if it was current."""
    slots = store.read_json(_NAME, {})
    entry = slots.get(label)
    if entry and entry[0] in (None, old_seq):
        entry[0] = new_seq
        store.write_json(_NAME, slots)
