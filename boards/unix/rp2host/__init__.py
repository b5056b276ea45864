"""Host side of the rp2 (Pico W) simulator: the supervisor that runs one board and host access
to the board's LittleFS. The ESP32 simulator's supervisor (simhost) is reused: its VM spawning,
watchdog enforcement and idle model; only what the rp2 port does differently is here."""
import sys
from pathlib import Path

UNIX = Path(__file__).resolve().parents[1]
RP2 = UNIX / "rp2"
MODULES = RP2 / "modules"
PORT_MAIN = RP2 / "port_main.py"
SHARED_MODULES = UNIX / "modules"  # sim_link: the device's end of the supervisor's pipe

if str(UNIX) not in sys.path:
    sys.path.insert(0, str(UNIX))
