# Check signed manifests with ota.manifest.check against the room given (ARGS["room"]) or,
# on an ESP32, this board's next update slot.
import json
from binascii import unhexlify
from ota import manifest, trust
from ota.errors import OTAError

keys = trust.load(ARGS["trust"])
slot = ARGS.get("room")
if slot is None:
    import esp32

    slot = esp32.Partition(esp32.Partition.RUNNING).get_next_update().info()[3]
out = []
with open(ARGS["cases"]) as f:
    for line in f:
        blob, board, minimum = line.split()
        try:
            m = manifest.check(unhexlify(blob), keys, board, int(minimum), slot)
            out.append({"ok": [m.version, m.counter, m.size, m.key_id]})
        except OTAError as e:
            out.append({"refused": e.reason})
print("RESULT", json.dumps({"slot": slot, "results": out}))
