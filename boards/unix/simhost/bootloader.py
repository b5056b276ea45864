"""The ESP32 second-stage bootloader, with rollback enabled and deep-sleep fast boot, as
ESP-IDF v5.5.2 builds it for MicroPython (bootloader_utility.c)."""
import simhost  # noqa: F401  (puts the shared device modules on the path)
import sim_flash
import sim_image
import sim_otadata
from sim_flash import TYPE_APP, TYPE_DATA, PartitionIO


class Boot:
    """What the bootloader loaded: the partition row, and the log lines it printed."""

    def __init__(self, row, log):
        self.row = row
        self.label = row[0]
        self.log = log


def _loads(flash, row, log, validate=True):
    try:
        sim_image.verify(PartitionIO(flash, row), boot=True, validate=validate)
        return True
    except (ValueError, OSError) as exc:
        log.append("%s: invalid app image (%s)" % (row[0], exc))
        return False


def boot(flash, table, wake_label=None):
    """Select and check the app to run; None when nothing is bootable (the chip resets)."""
    log = []
    if wake_label is not None:  # CONFIG_BOOTLOADER_SKIP_VALIDATE_IN_DEEP_SLEEP
        rows = [r for r in table if r[0] == wake_label]
        if rows and _loads(flash, rows[0], log, validate=False):
            log.append("fast boot from deep sleep: %s" % wake_label)
            return Boot(rows[0], log)
        log.append("fast boot failed, loading as usual")
    slots = sim_flash.ota_slots(table)
    factory = sim_flash.find(table, TYPE_APP, 0)
    otadata = sim_flash.find(table, TYPE_DATA, 0)
    index, initial = sim_otadata.FACTORY, False
    if otadata:
        index, initial = sim_otadata.bootloader_select(PartitionIO(flash, otadata[0]), len(slots),
                                                       bool(factory))
    # bootloader_utility_load_boot_image(): down to factory, then up through the OTA slots
    order = list(range(index, sim_otadata.FACTORY - 1, -1)) + list(range(index + 1, len(slots)))
    for i in order:
        row = (factory[0] if factory else None) if i == sim_otadata.FACTORY else slots[i]
        if row is not None and _loads(flash, row, log):
            if initial and i != sim_otadata.FACTORY and otadata:
                sim_otadata.set_actual_seq(PartitionIO(flash, otadata[0]), i)
                log.append("set actual ota_seq=%d in otadata[0]" % (i + 1))
            return Boot(row, log)
    log.append("no bootable app partitions")
    return None


def slot_state(flash, table, label):
    """The otadata state that governs the slot `label` now, as a name ("-" when none does)."""
    otadata = sim_flash.find(table, TYPE_DATA, 0)
    slots = sim_flash.ota_slots(table)
    if not otadata or not slots:
        return "-"
    entries = sim_otadata.read(PartitionIO(flash, otadata[0]))
    mapped = [e for e in entries if e[0] != sim_otadata.BLANK_SEQ and e[3] == sim_otadata.crc(e[0])
              and slots[(e[0] - 1) % len(slots)][0] == label]
    if not mapped:
        return "-"
    best = max(mapped, key=lambda e: e[0])
    return sim_otadata.STATE_NAMES.get(best[2], str(best[2]))
