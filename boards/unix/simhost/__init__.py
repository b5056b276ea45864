"""Host side of the ESP32 simulator: the bootloader and the supervisor that runs one device.

The device-side modules in boards/unix/modules that hold the ESP-IDF rules (sim_flash,
sim_otadata, sim_image) are imported from there, so device and host share one copy.
"""
import sys
from pathlib import Path

UNIX = Path(__file__).resolve().parents[1]
MODULES = UNIX / "modules"
BOARD_FROZEN = UNIX / "frozen"  # the board glue every ESP32_GENERIC image freezes
PORT_MAIN = UNIX / "port_main.py"
ROOT = UNIX.parents[1]
PARTITIONS = ROOT / "boards" / "esp32" / "partitions-4MiB-ota.csv"
ROMFS_PARTITIONS = ROOT / "boards" / "esp32" / "partitions-4MiB-ota-romfs.csv"  # the same with a romfs partition
BUILD_FROZEN = ROOT / "build" / "frozen"  # micropython-lib packages the real build freezes (make setup)

if str(MODULES) not in sys.path:
    sys.path.append(str(MODULES))
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))
