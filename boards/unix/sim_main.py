# main.py of simulated boards (demo and fleet tests): the project's example application, whose
# health check asks the running firmware (module `fw`, frozen in the synthetic image) how its
# hardware is doing, so a release can be built to fail its trial.
import time

import ota.service


def healthy():
    import fw

    return fw.healthy()


updates = ota.service.start(checks=[healthy])
while True:
    updates.poll()
    time.sleep_ms(10)
