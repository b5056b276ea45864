"""`machine.RTC` of a simulated board, as the esp32 port's (ports/esp32/machine_rtc.c)."""
import binascii
import json
import os
import time

from micropython import const

_RTC_MEMORY_MAX = const(2048)  # MICROPY_HW_RTC_USER_MEM_MAX


def _rtc_file():
    """Where the RTC domain lives between resets: beside the flash file. The supervisor
    removes it at power-on, as a board loses its RTC with the power."""
    return os.getenv("OTASIM_FLASH") + ".rtc"


def _rtc_state():
    try:
        with open(_rtc_file()) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {"offset_us": 0, "memory": ""}


def _days_from_1970(year, month, day):
    """Days from 1970-01-01 to the date, by the Gregorian calendar, unchecked as on the port."""
    y = year - (month <= 2)
    era_day = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    return 365 * y + y // 4 - y // 100 + y // 400 + era_day - 719468


class RTC:
    """The esp32 port's RTC: one object; datetime() reads or sets the system clock as
    (year, month, day, weekday 0-6 from Monday, hours, minutes, seconds, microseconds), the
    weekday ignored when setting; init() sets from (year, month, day, hours, minutes, seconds,
    -, microseconds); memory() keeps up to 2048 bytes. Clock and memory survive resets and
    deep sleep, not a power cut. The board's `time` module still reads the host's clock."""

    _one = None

    def __new__(cls, *args, **kwargs):
        if kwargs:
            raise TypeError("function doesn't take keyword arguments")
        if args:
            raise TypeError("function takes 0 positional arguments but %d were given" % len(args))
        if RTC._one is None:
            RTC._one = object.__new__(cls)
        return RTC._one

    def __init__(self, *args, **kwargs):
        pass

    def datetime(self, *args):
        if len(args) > 1:
            raise TypeError("function expected at most 2 arguments, got %d" % (len(args) + 1))
        if args:
            self._set(args[0], 4)
            return None
        now = time.time_ns() // 1000 + _rtc_state()["offset_us"]
        t = time.gmtime(now // 1000000)
        return (t[0], t[1], t[2], t[6], t[3], t[4], t[5], now % 1000000)

    def init(self, date):
        self._set(date, 3)

    def memory(self, *args):
        if len(args) > 1:
            raise TypeError("function expected at most 2 arguments, got %d" % (len(args) + 1))
        state = _rtc_state()
        if not args:
            return binascii.unhexlify(state["memory"])
        data = bytes(args[0])
        if len(data) > _RTC_MEMORY_MAX:
            raise ValueError("buffer too long")
        state["memory"] = binascii.hexlify(data).decode()
        self._save(state)
        return None

    def _set(self, items, hour):
        """machine_rtc_datetime_helper(): 8 items; the time of day from index `hour`."""
        if not isinstance(items, (tuple, list)):
            raise TypeError("object '%s' isn't a tuple or list" % type(items).__name__)
        if len(items) != 8:
            raise ValueError("requested length 8 but object has length %d" % len(items))
        seconds = (_days_from_1970(items[0], items[1], items[2]) * 86400
                   + items[hour] * 3600 + items[hour + 1] * 60 + items[hour + 2])
        state = _rtc_state()
        state["offset_us"] = seconds * 1000000 + items[7] - time.time_ns() // 1000
        self._save(state)

    def _save(self, state):
        with open(_rtc_file(), "w") as f:
            json.dump(state, f)
