# An example application bundle for a Pico W (docs/BUNDLES.md): bring the Wi-Fi up with bounded
# waits, then run the update service; the application's own work goes in the loop. Build it with
# `mpota bundle build boards/rp2/app -o app.bundle --mpy-arch armv6m`.
import json
import time

import network

import ota
import ota.service


def wifi_up(timeout_ms=20000):
    """Join the access point named in wifi.json ({"ssid": ..., "password": ...}); False on timeout."""
    with open("wifi.json") as f:
        cfg = json.load(f)
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    if not wlan.isconnected():
        wlan.connect(cfg["ssid"], cfg["password"])
    start = time.ticks_ms()
    while not wlan.isconnected():
        if time.ticks_diff(time.ticks_ms(), start) > timeout_ms:
            return False
        ota.feed()  # on a trial boot the watchdog runs (and cannot be stopped on rp2)
        time.sleep_ms(200)
    return True


def healthy():
    """The application's own health check, run before a new bundle is confirmed."""
    return True


while not wifi_up():
    time.sleep_ms(1000)
updates = ota.service.start(checks=[healthy])
while True:
    updates.poll()
    time.sleep_ms(10)
