# manifest.py: freeze the `ota` package into a custom MicroPython firmware, so every release
# carries the agent that matches it (frozen modules come before /lib on sys.path, so the
# filesystem copy is then unused). From a MicroPython checkout, for the ESP32 OTA variant:
#
#   make -C ports/esp32 BOARD=ESP32_GENERIC BOARD_VARIANT=OTA \
#       FROZEN_MANIFEST=/path/to/micropython-ota/manifest.py
#
# The first line keeps everything the port freezes by default (_boot, inisetup, asyncio, umqtt...).
include("$(PORT_DIR)/boards/manifest.py")
package("ota", base_path="lib")
