"""Power-cut campaign: an update loop cut at random instants always leaves a bootable board.

The normal run makes a few cuts; OTA_SOAK=1 (`make soak`) makes many."""
import os
import random
import re
import time

CYCLE = """
import esp32, machine
P = esp32.Partition
P.mark_app_valid_cancel_rollback()
running = P(P.RUNNING)
nxt = running.get_next_update()
print('cycle from', running.info()[4])
buf = bytearray(4096)
with open('b.bin' if running.info()[4] == 'ota_0' else 'a.bin', 'rb') as f:
    i = 0
    while f.readinto(buf):
        nxt.writeblocks(i, buf)
        i += 1
nxt.set_boot()
machine.reset()
"""


def test_power_cut_campaign_always_boots(sim_device, firmware):
    cuts = 60 if os.environ.get("OTA_SOAK") == "1" else 5
    rng = random.Random(20261122)
    a, b = firmware("A", size=64 * 4096), firmware("B", {"x": "y = 1\n"}, size=64 * 4096)
    device = sim_device(a, {"main.py": CYCLE, "a.bin": a, "b.bin": b})
    for _ in range(cuts):
        cycles = len(re.findall(r"^cycle from", device.console, re.M))
        device.start()
        device.wait_lines(r"^cycle from", cycles + 1)  # the cut lands inside a cycle, however slow the boot
        time.sleep(rng.uniform(0.0, 0.5))
        device.power_cut()
    assert "no-bootable-app" not in device.console and "Traceback" not in device.console, device.console
    device.write_files({"main.py": "print('still alive')\n"})
    console = device.run()
    assert "still alive" in console
    assert {b["version"] for b in device.boot_log()} == {"A", "B"}
    assert len(re.findall(r"^cycle from", device.console, re.M)) >= cuts
