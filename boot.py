# boot.py: runs first at every boot. On a board with app bundles, select() picks the bundle to
# run (and rolls back one that failed its trial) before anything else is imported; on a board
# without bundles it does nothing. Then, on the first boot of a new firmware or bundle,
# ota.boot() arms the watchdog, so one that hangs, crashes or never confirms is rolled back.
from ota.bundle_boot import select
select()
del select
import ota

ota.boot()
