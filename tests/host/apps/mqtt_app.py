# main.py of the fleet tests: the project's example application, whose health check asks the
# running firmware (module `fw`, frozen in the image) how its hardware is doing.
import time

import ota.service


def healthy():
    import fw

    return fw.healthy()


updates = ota.service.start(checks=[healthy])
while True:
    updates.poll()
    time.sleep_ms(10)
