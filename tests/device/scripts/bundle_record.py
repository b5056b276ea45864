# The board's bundle record (.ota/bundle, read as ota.bundle_boot reads it) and the version file
# of the active bundle.
import json
from ota import bundle_boot

state = bundle_boot.load()
try:
    with open(bundle_boot.folder(state["active"]) + "/version.txt") as f:
        running = f.read()
except (OSError, TypeError):
    running = None
print("RESULT", json.dumps({"active": state["active"], "release": state["release"], "trial": state["trial"],
                            "outcome": state["outcome"], "running": running}))
