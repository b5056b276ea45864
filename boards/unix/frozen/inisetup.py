# First boot of the esp32 port: an erased "vfs" partition gets a LittleFS v2 filesystem and a
# boot.py; one that is neither mountable nor erased is reported as corrupted, forever.
import vfs
from flashbdev import bdev

BOOT_PY = """\
# This file is executed on every boot (including wake-boot from deepsleep)
#import esp
#esp.osdebug(None)
#import webrepl
#webrepl.start()
"""


def check_bootsec():
    block = bytearray(bdev.ioctl(5, 0))  # the block size
    bdev.readblocks(0, block)
    for b in block:
        if b != 0xFF:
            fs_corrupted()
    return True


def fs_corrupted():
    import time
    import micropython

    micropython.kbd_intr(3)
    while True:
        print("filesystem corrupted: the vfs partition neither mounts nor is erased")
        time.sleep(3)


def setup():
    check_bootsec()
    print("Performing initial setup")
    if bdev.info()[4] == "vfs":
        vfs.VfsLfs2.mkfs(bdev)
        fs = vfs.VfsLfs2(bdev)
    else:
        vfs.VfsFat.mkfs(bdev)
        fs = vfs.VfsFat(bdev)
    vfs.mount(fs, "/")
    with open("boot.py", "w") as f:
        f.write(BOOT_PY)
    return fs
