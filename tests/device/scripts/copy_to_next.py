# Copy the running image to the next update slot, sector by sector, then set_boot() it.
import esp32
import gc
import json

running = esp32.Partition(esp32.Partition.RUNNING)
nxt = running.get_next_update()
assert nxt.info()[4] != running.info()[4]
buf = bytearray(4096)
blocks = min(running.ioctl(4, 0), nxt.ioctl(4, 0))
for i in range(blocks):
    running.readblocks(i, buf)
    nxt.writeblocks(i, buf)  # three arguments: erase, then write
    if i % 32 == 0:
        gc.collect()
nxt.set_boot()
print("RESULT", json.dumps({"copied": blocks, "to": nxt.info()[4]}))
