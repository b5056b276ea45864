"""`machine` as on the rp2 port: the unix port's module plus WDT, reset, reset_cause, unique_id
and freq, backed by the simulator's supervisor.

rp2 facts (ports/rp2/machine_wdt.c, modmachine.c): the watchdog's timeout is at most 8388 ms and
nothing stops it once started; `reset()` reboots through the watchdog, so `reset_cause()` says
WDT_RESET after a reset and after a watchdog timeout alike. The port has only PWRON_RESET and
WDT_RESET."""
from umachine import *  # noqa: F401,F403  (the unix port's machine is extensible)
from micropython import const
import binascii
import os

import rp2
import sim_link

PWRON_RESET = const(1)
WDT_RESET = const(3)
_WDT_TIMEOUT_MAX = const(8388)  # 0xffffff / 2 ticks per us / 1000 on RP2040

_freq = 125000000  # RP2040 default system clock


_timeout_us = 0


class WDT:
    """The RP2040 watchdog: a second WDT() restarts it with the new timeout. Flash time spent
    since the last feed is checked here, so a feed that comes too late never returns (the
    supervisor adds the CPU time)."""

    def __init__(self, id=0, timeout=5000):
        global _timeout_us
        if id != 0:
            raise ValueError("WDT(%d) doesn't exist" % id)
        if timeout < 0 or timeout > _WDT_TIMEOUT_MAX:  # the port converts to uint32 first
            raise ValueError("timeout exceeds 8388")
        _timeout_us = timeout * 1000
        sim_link.send("wdt %d %d" % (timeout, rp2.busy_us()))

    def feed(self):
        busy = rp2.busy_us()
        if busy > _timeout_us:
            sim_link.halt("expired %d" % busy)  # the board reset while the flash was busy
        sim_link.send("feed %d" % busy)


def reset():
    sim_link.halt("reset")


def reset_cause():
    return int(os.getenv("OTASIM_RESET_CAUSE") or PWRON_RESET)


def unique_id():
    return binascii.unhexlify(os.getenv("OTASIM_UID") or "e660583883000001")


def freq(hz=None):
    global _freq
    if hz is None:
        return _freq
    _freq = hz
