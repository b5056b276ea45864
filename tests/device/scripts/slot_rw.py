# Erase, write and read back a few sectors of the next update slot; the running slot must not change.
import esp32
import hashlib
import json

SECTORS = ARGS["sectors"]
running = esp32.Partition(esp32.Partition.RUNNING)
nxt = running.get_next_update()
buf = bytearray(4096)


def digest(part, count):
    h = hashlib.sha256()
    for i in range(count):
        part.readblocks(i, buf)
        h.update(buf)
    return h.digest()


def pattern(i, salt):
    return bytes(((j * 7 + i * 13 + salt) & 0xFF) for j in range(4096))


before = digest(running, SECTORS)
out = {"running": running.info()[4], "next": nxt.info()[4], "block_size": nxt.ioctl(5, 0),
       "blocks": nxt.ioctl(4, 0)}
out["erase"] = [nxt.ioctl(6, i) for i in range(SECTORS)]
erased = True
for i in range(SECTORS):
    nxt.readblocks(i, buf)
    erased = erased and buf == b"\xff" * 4096
out["erased"] = erased
ok = True
for i in range(SECTORS):
    nxt.writeblocks(i, pattern(i, 1), 0)  # four arguments: no erase, onto erased flash
for i in range(SECTORS):
    nxt.readblocks(i, buf)
    ok = ok and buf == pattern(i, 1)
out["written"] = ok
# Over written flash a 4-argument write can only clear bits; a 3-argument one erases first.
nxt.writeblocks(0, pattern(0, 2), 0)
nxt.readblocks(0, buf)
out["and"] = buf == bytes(a & b for a, b in zip(pattern(0, 1), pattern(0, 2)))
nxt.writeblocks(1, pattern(1, 2))
nxt.readblocks(1, buf)
out["erase_write"] = buf == pattern(1, 2)
part = bytearray(100)
nxt.readblocks(1, part, 1000)
out["offset_read"] = part == pattern(1, 2)[1000:1100]
for i in range(SECTORS):
    nxt.ioctl(6, i)
out["running_unchanged"] = digest(running, SECTORS) == before
print("RESULT", json.dumps(out))
