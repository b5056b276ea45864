# main.py: an example device application with over-the-air updates.
# Settings (Wi-Fi, broker, TLS files, fleet, group, install policy) are in ota_config.json; the
# trusted signing keys in .ota/trust.bin. Both are written by `mpota provision`. With a `wifi`
# section the service brings the network up itself; without one, the application does.
import time

import ota.service


def healthy():
    """The application's own health check, run before a new firmware is confirmed."""
    return True


updates = ota.service.start(checks=[healthy])
while True:
    updates.poll()
    time.sleep_ms(10)  # the application's own work goes here
