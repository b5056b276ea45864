# main.py of a test application: the project's update service, and lines naming which of the
# update's modules the board holds: `AT kind` as the service emits each event (a whole download
# and its reset can fall within one poll), `HELD kind` once the poll that saw it has returned.
import sys

import ota.service
from ota import events

LOADED_ON_DEMAND = ("ota.config", "ota.updater", "ota.manifest", "ota.p256", "ota.trust", "ota.freshness",
                    "ota.outcome", "ota.installed", "ota.store", "ota.progress", "ota.slot")
seen = []


def held(label, kind):
    print(label, kind, " ".join(m for m in LOADED_ON_DEMAND if m in sys.modules) or "-")


def at(kind, fields):
    seen.append(kind)
    held("AT", kind)


events.listen(at)
updates = ota.service.start()
connected = False
while True:
    told = len(seen)
    updates.poll()
    if updates.transport.connected and not connected:
        seen.append("connected")
    connected = updates.transport.connected
    for kind in seen[told:]:
        held("HELD", kind)
