#!/bin/sh
# Make sure the brokers the tests run are installed: Debian's mosquitto (and its clients) and
# rabbitmq-server (its MQTT plugin is the second broker). The tests start their own instances
# on 127.0.0.1; the packaged services are stopped. Also strace: tests watch and kill the host
# commands through it (tests/host/syscalls.py).
set -e
PATH="$PATH:/usr/sbin:/sbin"
have() {
    command -v mosquitto >/dev/null 2>&1 && command -v mosquitto_sub >/dev/null 2>&1 &&
        [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] && command -v strace >/dev/null 2>&1
}
if have; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing mosquitto, rabbitmq-server and strace with apt-get" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        mosquitto mosquitto-clients rabbitmq-server strace >/dev/null
    for service in mosquitto rabbitmq-server; do
        (service "$service" stop || true) >/dev/null 2>&1
    done
    have && exit 0
fi
echo "a broker or strace is missing: run 'sudo apt-get install mosquitto mosquitto-clients rabbitmq-server strace' and try again" >&2
exit 1
