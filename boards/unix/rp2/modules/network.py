"""`network` as the rp2 port has it on a Pico W: the CYW43 driver (extmod/network_cyw43.c over
the cyw43-driver's src/cyw43_ctrl.c and src/cyw43_lwip.c), for simulated boards.

The access point in range is the ESP32 simulator's Wi-Fi world (its `network` module, loaded
here as `sim_wlan`: the control file OTASIM_FLASH + ".net", the ".air" log of association
requests, addresses, config()); what differs on a Pico W is overridden:

- status() is cyw43_tcpip_link_status(): STAT_IDLE 0 (CYW43_LINK_DOWN), STAT_CONNECTING 1
  (CYW43_LINK_JOIN; also while associated without an address, CYW43_LINK_NOIP 2 is not
  modelled apart), STAT_GOT_IP 3 (CYW43_LINK_UP), STAT_CONNECT_FAIL -1 (CYW43_LINK_FAIL),
  STAT_NO_AP_FOUND -2 (CYW43_LINK_NONET), STAT_WRONG_PASSWORD -3 (CYW43_LINK_BADAUTH);
  modnetwork.c maps the STAT_* names to those values.
- A join that fails stays failed: the driver does not ask again (cyw43_cb_process_async_event
  sets wifi_join_state to NONET or BADAUTH and nothing restarts cyw43_wifi_join). A link lost
  under an associated station is not rejoined either: status() stays CYW43_LINK_JOIN with no
  address until the application calls connect() again.
- connect() needs the interface active, else OSError(EPERM) (cyw43_wifi_join returns
  -CYW43_EPERM); without a key it joins an open network (CYW43_AUTH_OPEN).
- disconnect() is cyw43_wifi_leave(): the DISASSOC event sets the join state to 0 (LINK_DOWN).
- active(x) returns None; active() reports the last request (if_active[]).
- the default hostname is "PicoW" (ports/rp2/boards/RPI_PICO_W/mpconfigboard.h).
"""
import time

from micropython import const

import sim_wlan

STA_IF = const(0)
AP_IF = const(1)
STAT_IDLE = const(0)  # CYW43_LINK_DOWN
STAT_CONNECTING = const(1)  # CYW43_LINK_JOIN
STAT_GOT_IP = const(3)  # CYW43_LINK_UP
STAT_CONNECT_FAIL = const(-1)  # CYW43_LINK_FAIL
STAT_NO_AP_FOUND = const(-2)  # CYW43_LINK_NONET
STAT_WRONG_PASSWORD = const(-3)  # CYW43_LINK_BADAUTH
_EPERM = const(1)
_SCAN_MS = const(300)  # a scan that finds nothing, or a refused handshake: as sim_wlan's
_ASSOC_MS = const(50)  # association and DHCP with a willing AP, before the AP's own delay_ms

sim_wlan._hostname = "PicoW"
country = sim_wlan.country
hostname = sim_wlan.hostname
link_up = sim_wlan.link_up  # for the simulated socket layer


class WLAN(sim_wlan.WLAN):
    def _setup(self, interface):
        super()._setup(interface)
        self._join = STAT_IDLE  # the driver's wifi_join_state, as status() reports it
        self._associated = False

    def _refresh(self):
        if self._if != STA_IF or not self._active or self._join != STAT_CONNECTING:
            return
        now = time.ticks_ms()
        ap = sim_wlan._control()
        waited = time.ticks_diff(now, self._since)
        if not ap or not ap.get("up", True) or ap.get("ssid") != self._ssid:
            if self._connected:
                self._connected = False  # link down; the join state stays ACTIVE: LINK_JOIN
            elif not self._associated and waited >= _SCAN_MS:
                self._join = STAT_NO_AP_FOUND  # EV_SET_SSID status 3: no matching SSID
            return
        if ap.get("password", "") != self._key:
            if not self._associated and waited >= _SCAN_MS:
                self._join = STAT_WRONG_PASSWORD  # EV_AUTH / EV_PSK_SUP failure
            return
        if not self._associated and waited >= _ASSOC_MS + ap.get("delay_ms", 0):
            self._associated = self._connected = True  # WIFI_JOIN_STATE_ALL, then DHCP

    def active(self, is_active=None):
        if is_active is None:
            return self._active
        if not is_active:
            self.disconnect()
        self._active = bool(is_active)
        return None

    def connect(self, ssid, key=None, *, security=-1, bssid=None, channel=0):
        if not self._active:
            raise OSError(_EPERM)  # cyw43_wifi_join: -CYW43_EPERM
        if bssid is not None and len(bssid) != 6:
            raise ValueError
        self._ssid = ssid[:32]
        self._key = key or ""
        self._join = STAT_CONNECTING
        self._associated = self._connected = False
        self._since = time.ticks_ms()
        sim_wlan._on_air("connect " + self._ssid)

    def disconnect(self):
        self._join = STAT_IDLE
        self._associated = self._connected = False

    def config(self, *args, **kwargs):
        if "reconnects" in kwargs or args == ("reconnects",):
            raise ValueError("unknown config param")  # an esp32 setting; the driver never rejoins
        return super().config(*args, **kwargs)

    def status(self, param=None):
        if param is not None:
            if param == "rssi":
                if self._if != STA_IF:
                    raise ValueError("STA required")
                self._refresh()
                return -58 if self._connected else 0
            raise ValueError("unknown status param")
        self._refresh()
        return STAT_GOT_IP if self._connected else self._join
