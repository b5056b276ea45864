# Frozen start-up of the esp32 port, run before boot.py: mount the filesystem at "/", or set
# it up on first boot (inisetup).
import gc
import vfs
from flashbdev import bdev

try:
    if bdev:
        vfs.mount(bdev, "/")
except OSError:
    import inisetup

    inisetup.setup()

gc.collect()
