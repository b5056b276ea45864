#!/bin/sh
# Make sure Debian's mosquitto broker is installed: the tests run a real one on 127.0.0.1.
set -e
PATH="$PATH:/usr/sbin:/sbin"
if command -v mosquitto >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing mosquitto with apt-get" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mosquitto mosquitto-clients >/dev/null
    # The tests start their own brokers; the packaged service is not needed.
    (service mosquitto stop || true) >/dev/null 2>&1
    command -v mosquitto >/dev/null 2>&1 && exit 0
fi
echo "mosquitto is missing: run 'sudo apt-get install mosquitto mosquitto-clients' and try again" >&2
exit 1
