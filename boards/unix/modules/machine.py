"""`machine` as on the ESP32 port: the unix port's built-in module plus WDT, reset,
reset_cause, deepsleep, unique_id, freq and RTC, backed by the simulator's supervisor."""
from umachine import *  # noqa: F401,F403  (the unix port's machine is extensible)
from micropython import const
import binascii
import os

import sim_link

PWRON_RESET = const(1)
HARD_RESET = const(2)
WDT_RESET = const(3)
DEEPSLEEP_RESET = const(4)
SOFT_RESET = const(5)

_FREQS = (20000000, 40000000, 80000000, 160000000, 240000000)
_freq = 160000000  # ESP32_GENERIC boots at 160 MHz


class WDT:
    """The IDF task watchdog: once armed it resets the board unless fed within `timeout` ms.
    A second WDT() reconfigures the timeout; nothing stops it before the next reset."""

    def __init__(self, id=0, timeout=5000):
        if id != 0 or timeout <= 0:
            raise ValueError
        sim_link.send("wdt %d" % timeout)

    def feed(self):
        sim_link.send("feed")


def reset():
    sim_link.halt("reset")


def deepsleep(*ms):
    """Sleep `ms` milliseconds, then boot with DEEPSLEEP_RESET; with no argument nothing wakes
    the board (the port arms the timer only when given a time, so 0 wakes at once). Positional
    only, as on the port."""
    if len(ms) > 1:
        raise TypeError("function expected at most 1 arguments, got %d" % len(ms))
    sim_link.halt("deepsleep %d" % max(0, ms[0]) if ms else "deepsleep forever")


def reset_cause():
    return int(os.getenv("OTASIM_RESET_CAUSE") or PWRON_RESET)


def unique_id():
    return binascii.unhexlify(os.getenv("OTASIM_UID") or "240ac4000001")


def freq(hz=None):
    global _freq
    if hz is None:
        return _freq
    if hz not in _FREQS:
        raise ValueError("frequency must be 20MHz, 40MHz, 80Mhz, 160MHz or 240MHz")
    _freq = hz


def __getattr__(name):
    """RTC (sim_rtc.py) is loaded on first use, so boards that never touch it do not carry it
    on their heap."""
    if name == "RTC":
        from sim_rtc import RTC

        return RTC
    raise AttributeError("'module' object has no attribute '%s'" % name)
