# The running slot, the otadata state that governs it and the next update slot.
import esp32
import json
from ota import otadata

running = esp32.Partition(esp32.Partition.RUNNING)
print("RESULT", json.dumps({"running": running.info()[4], "state": otadata.running_state(),
                            "next": running.get_next_update().info()[4]}))
