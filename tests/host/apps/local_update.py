# main.py of the pipeline tests: the firmware's own behaviour (module `fw`, frozen in the image),
# then a release read from the device's filesystem and fed to the updater in a shuffled order with
# duplicates: a transport stand-in, so the pipeline is tested on its own.
import json
import random
import time
from array import array

import ota
from ota import events, trial, trust
from ota.errors import OTAError
from ota.updater import Updater
from table_feed import feed_table

events.listen(lambda kind, fields: print("EVENT", kind, json.dumps(fields)))
with open("app.json") as f:
    cfg = json.load(f)

import fw  # noqa: E402  (the running firmware decides what happens now)

fw.start()
while trial.in_trial() and not ota.confirm([fw.healthy]):
    ota.feed()  # a check that cannot tell yet (None) is asked again, until the deadline
    time.sleep_ms(20)


def chunks_in_shuffled_order(count, seed, duplicates):
    random.seed(seed)
    order = array("H", range(count))  # 2 bytes an entry: the app's own heap stays small
    for _ in range(duplicates):
        order.append(random.getrandbits(16) % count)
    for i in range(len(order) - 1, 0, -1):
        j = random.getrandbits(16) % (i + 1)
        order[i], order[j] = order[j], order[i]
    return order


try:
    with open("/.sim/share/release/manifest.bin", "rb") as f:
        blob = f.read()
except OSError:
    blob = None
if blob:
    updater = Updater(trust.load(), cfg.get("board", "esp32-generic"), permission=lambda: cfg.get("allow", True),
                      tick=ota.feed)
    try:
        m = updater.offer(blob)
    except OTAError as exc:
        print("REFUSED", exc.reason)
        m = None
    if m:
        feed_table(updater, m, "/.sim/share/release/%s.table" % m.id)
        buf = bytearray(m.chunk_size + 64)  # encoded chunks may be 64 bytes longer
        span = bytearray(8)
        # .ends: where each chunk starts and ends, 4 bytes each
        with open("/.sim/share/release/%s.ends" % m.id, "rb") as ends, \
                open("/.sim/share/release/%s.chunks" % m.id, "rb") as image:
            for n, i in enumerate(chunks_in_shuffled_order(m.chunk_count, cfg.get("seed", 1), cfg.get("duplicates", 0))):
                if updater.complete() or n == cfg.get("stop_after"):
                    break
                ends.seek(4 * i)
                ends.readinto(span)
                start = int.from_bytes(span[:4], "big")
                n = int.from_bytes(span[4:], "big") - start
                image.seek(start)
                image.readinto(memoryview(buf)[:n])
                try:
                    updater.write_chunk(i, memoryview(buf)[:n])
                except OTAError as exc:
                    print("CHUNK_REFUSED", i, exc.reason)
                ota.feed()
        try:
            if updater.complete():
                updater.finish()
                if not updater.install():
                    print("NOT PERMITTED")
        except OTAError as exc:
            print("REFUSED", exc.reason)
print("IDLE", json.dumps(events.state()))
