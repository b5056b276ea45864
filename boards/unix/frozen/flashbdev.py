# The board's filesystem block device, as the esp32 port's frozen flashbdev module picks it:
# the data partition labelled "vfs" (MicroPython's own tables), else "ffat" in 512-byte blocks.
from esp32 import Partition

bdev = Partition.find(Partition.TYPE_DATA, label="vfs") or Partition.find(
    Partition.TYPE_DATA, label="ffat", block_size=512)
bdev = bdev[0] if bdev else None
