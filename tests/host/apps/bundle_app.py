# main.py of the test application bundles: the bundle's own behaviour (module `behaviour`, shipped
# in the bundle) decides the trial; then releases found on the filesystem are fed to the updater
# in a shuffled order: a transport stand-in, so the bundle pipeline is tested without a network.
import json
import random
import time

import ota
from ota import events, trial, trust
from ota.config import load as load_config
from ota.errors import OTAError
from ota.updater import Updater
from table_feed import feed_table

events.listen(lambda kind, fields: print("EVENT", kind, json.dumps(fields)))
with open("app.json") as f:
    cfg = json.load(f)

import behaviour  # noqa: E402  (the bundle on trial decides what happens now)

behaviour.start()
while trial.in_trial() and not ota.confirm([behaviour.healthy]):
    ota.feed()
    time.sleep_ms(20)


def apply(folder):
    """Offer the release staged in `folder`; download, verify and install it if it is new."""
    try:
        with open(folder + "/manifest.bin", "rb") as f:
            blob = f.read()
    except OSError:
        return
    updater = Updater(trust.load(), load_config()["board"], tick=ota.feed)
    try:
        m = updater.offer(blob)
    except OTAError as exc:
        print("REFUSED", exc.reason)
        return
    if not m:
        return
    feed_table(updater, m, folder + "/table.bin")
    random.seed(cfg.get("seed", 1))
    order = list(range(m.chunk_count))
    for i in range(len(order) - 1, 0, -1):
        j = random.getrandbits(16) % (i + 1)
        order[i], order[j] = order[j], order[i]
    buf = bytearray(m.chunk_size)
    with open(folder + "/payload.bin", "rb") as payload:
        for i in order:
            n = min(m.chunk_size, m.size - i * m.chunk_size)
            payload.seek(i * m.chunk_size)
            payload.readinto(buf)
            updater.write_chunk(i, memoryview(buf)[:n])
            ota.feed()
    try:
        updater.finish()
        updater.install()
    except OTAError as exc:
        print("REFUSED", exc.reason)


for folder in cfg.get("releases", ["release"]):  # a newer one may wait behind the first
    apply(folder)
print("IDLE", json.dumps(events.state()))
