# boot.py: runs first at every boot. On the first boot of a new firmware, ota.boot() arms the
# watchdog, so a firmware that hangs, crashes or never confirms is rolled back by the bootloader.
import ota

ota.boot()
