# An example application bundle for a Pico W (docs/BUNDLES.md): the update service brings the
# Wi-Fi up itself, from the `wifi` section `mpota provision --wifi-ssid` wrote into
# ota_config.json (ota.net: bounded attempts, backed-off retries), then keeps the board
# updatable; the application's own work goes in the loop. Build it with
# `mpota bundle build boards/rp2/app -o app.bundle --mpy-arch armv6m`.
import time

import ota.service


def healthy():
    """The application's own health check, run before a new bundle is confirmed."""
    return True


updates = ota.service.start(checks=[healthy])
while True:
    updates.poll()  # one bounded step: Wi-Fi, broker, updates; feeds the watchdog on a trial
    time.sleep_ms(10)
