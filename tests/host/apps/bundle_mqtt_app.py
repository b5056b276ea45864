# main.py of the MQTT test bundles: the project's three-line service, with the bundle's own
# behaviour module (shipped in the bundle) as the health check.
import time

import behaviour
import ota.service

behaviour.start()
updates = ota.service.start(checks=[behaviour.healthy])
while True:
    updates.poll()
    time.sleep_ms(10)
