# main.py of a test application: the project's update service, and a line naming which of the
# update's modules the board holds once it is connected, and after each event the service saw.
import sys

import ota.service
from ota import events

LOADED_ON_DEMAND = ("ota.config", "ota.updater", "ota.manifest", "ota.p256", "ota.trust", "ota.freshness",
                    "ota.outcome", "ota.installed", "ota.store", "ota.progress", "ota.slot")
seen = []
events.listen(lambda kind, fields: seen.append(kind))
updates = ota.service.start()
connected = False
while True:
    told = len(seen)
    updates.poll()
    if updates.transport.connected and not connected:
        seen.append("connected")
    connected = updates.transport.connected
    for kind in seen[told:]:
        print("HELD", kind, " ".join(m for m in LOADED_ON_DEMAND if m in sys.modules) or "-")
