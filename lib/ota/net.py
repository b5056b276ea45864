"""Wi-Fi for the update service: bring the station up and keep it up, never blocking for long.

    link = net.start(cfg["wifi"])   # None when the application manages the radio ("wifi": null)
    if link is None or link.poll(): ...   # each call is one status check: True while online

The settings (`ota_config.json`, key `wifi`): ssid, password, and optionally ifconfig (a static
[ip, netmask, gateway, dns]), hostname, country, connect_timeout_s, retry_max_s. The ESP32
driver retries association by itself after a drop, the Pico W's CYW43 driver does not; on both,
when an attempt has not brought an IP within connect_timeout_s, the station is disconnected and
asked again after a pause that doubles from one second up to retry_max_s, for as long as it
takes. Link changes are `link` events (the transport reports them once the broker is reachable
again) with the port's own `status` code and a `failure` that reads the same on every port
(`auth_failed`, `no_ap_found`, `connect_fail`, from the port's `network.STAT_*`: 202/201/203
on ESP32, -3/-2/-1 on a Pico W); the password never leaves here."""
import time

from micropython import const

from ota import events

_FIRST_PAUSE_MS = const(1000)
_FAILURES = (("STAT_WRONG_PASSWORD", "auth_failed"), ("STAT_NO_AP_FOUND", "no_ap_found"),
            ("STAT_CONNECT_FAIL", "connect_fail"))


def failure(status):
    """The name of a failed link's status, the same on every port (None for any other); not
    `reason`, which names why an update ended in the device's state."""
    import network

    for name, text in _FAILURES:
        if getattr(network, name, None) == status:
            return text
    return None


def start(settings):
    """A Link for the settings, started; None when there are none (the application's radio)."""
    if not settings:
        return None
    link = Link(settings)
    link.begin()
    return link


class Link:
    def __init__(self, settings):
        import network

        self.ssid = settings["ssid"]
        self.password = settings.get("password")
        self.settings = settings
        self.attempt_ms = int(settings.get("connect_timeout_s", 20) * 1000)
        self.pause_max_ms = int(settings.get("retry_max_s", 60) * 1000)
        self.wlan = network.WLAN(network.STA_IF)
        self.up = False
        self.pause_ms = self.first_pause_ms = min(_FIRST_PAUSE_MS, self.pause_max_ms)
        self.give_up_at = None  # ticks: the running attempt is abandoned then
        self.retry_at = None  # ticks: the next attempt starts then
        self.attempts = 0

    def begin(self):
        """Switch the station on and ask for the AP (returns at once; the driver connects)."""
        import network

        s = self.settings
        if s.get("country") and hasattr(network, "country"):
            network.country(s["country"])
        if s.get("hostname") and hasattr(network, "hostname"):
            network.hostname(s["hostname"])
        self.wlan.active(True)
        if s.get("ifconfig"):
            self.wlan.ifconfig(tuple(s["ifconfig"]))
        self._attempt(time.ticks_ms())

    def _attempt(self, now):
        self.attempts += 1
        self.retry_at = None
        self.give_up_at = time.ticks_add(now, self.attempt_ms)
        try:
            self.wlan.connect(self.ssid, self.password)
        except OSError:
            self.give_up_at = now  # the driver refused at once: pause, then ask again

    def poll(self):
        """One look at the link; starts the next attempt when one is due. True while online."""
        now = time.ticks_ms()
        if self.wlan.isconnected():
            if not self.up:
                self.up = True
                self.pause_ms = self.first_pause_ms
                self.give_up_at = None
                events.emit("link", link="up", attempts=self.attempts, address=self.wlan.ifconfig()[0])
                self.attempts = 0
            return True
        if self.up:
            self.up = False
            self._down()
            self.give_up_at = time.ticks_add(now, self.attempt_ms)  # the driver reassociates by itself
        if self.retry_at is not None:
            if time.ticks_diff(now, self.retry_at) >= 0:
                self._attempt(now)
        elif self.give_up_at is not None and time.ticks_diff(now, self.give_up_at) >= 0:
            self._down(attempts=self.attempts)
            self.wlan.disconnect()
            self.retry_at = time.ticks_add(now, self.pause_ms)
            self.pause_ms = min(self.pause_ms * 2, self.pause_max_ms)
        return False

    def _down(self, **fields):
        status = self.wlan.status()
        events.emit("link", link="down", status=status, failure=failure(status), **fields)
