# main.py of the demo's Pico W bundles: the update service, with the bundle's own `behaviour`
# module as its health check (a bad release ships one that fails it).
import time

import behaviour
import ota.service

updates = ota.service.start(checks=[behaviour.healthy])
while True:
    updates.poll()
    time.sleep_ms(10)
