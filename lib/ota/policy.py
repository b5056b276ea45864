"""When an update may be installed: the application decides (BRIEF practice 7).

A permission is any callable that returns True when the device may switch and reboot now:
`now`, `window(start_hour, end_hour)`, or the application's own test for idle or user consent."""
import time


def now():
    return True


def window(start_hour, end_hour, clock=time.localtime):
    """Allow installs between `start_hour` and `end_hour` local time (may wrap past midnight)."""

    def allowed():
        hour = clock()[3]
        if start_hour <= end_hour:
            return start_hour <= hour < end_hour
        return hour >= start_hour or hour < end_hour

    return allowed
