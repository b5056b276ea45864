"""`network` as the ESP32 port has it (ports/esp32/network_wlan.c, modnetwork_globals.h,
network_common.c; extmod/modnetwork.c for country() and hostname()), for simulated boards.

The radio's world is a JSON control file the test side writes beside the flash file
(OTASIM_FLASH + ".net"): {"ssid", "password", "up", "delay_ms"}, the one access point in range,
whether it is on the air, and how long association and DHCP take. Each connect() is logged in
OTASIM_FLASH + ".air", as an AP would see the station's requests. Without that file the board
has no Wi-Fi world: no AP is ever found, and the socket layer is left as the host gives it
(a board whose network the application manages some other way).

As on the port, a station asked to connect keeps trying by itself after every failure or drop
(network_wlan_wifi_event_handler() calls esp_wifi_connect() again while a connection is
requested), up to `config(reconnects=n)` attempts when set; status() maps the last disconnect
reason as network_wlan_status() does.
"""
import json
import os
import time

from micropython import const

STA_IF = const(0)
AP_IF = const(1)
STAT_IDLE = const(1000)
STAT_CONNECTING = const(1001)
STAT_GOT_IP = const(1010)
STAT_BEACON_TIMEOUT = const(200)  # WIFI_REASON_BEACON_TIMEOUT
STAT_NO_AP_FOUND = const(201)  # WIFI_REASON_NO_AP_FOUND
STAT_WRONG_PASSWORD = const(202)  # WIFI_REASON_AUTH_FAIL
STAT_ASSOC_FAIL = const(203)
STAT_CONNECT_FAIL = const(203)
STAT_HANDSHAKE_TIMEOUT = const(204)
_REASON_ASSOC_LEAVE = const(8)  # after disconnect()
_REASON_CONNECTION_FAIL = const(205)
_SCAN_MS = const(300)  # a scan that finds nothing, or a refused handshake, takes this long at least
_ASSOC_MS = const(50)  # association and DHCP with a willing AP, before the AP's own delay_ms
_SUBNET = "192.168.4."

_country = "XX"
_hostname = "mpy-esp32"  # MICROPY_PY_NETWORK_HOSTNAME_DEFAULT for ESP32


def _on_air(line):
    """What the radio sends, for the test side to see as an AP does (a log beside the control
    file): one line per association request."""
    path = os.getenv("OTASIM_FLASH")
    if path:
        with open(path + ".air", "a") as f:
            f.write(line + "\n")


def _control():
    """The AP in range as the test describes it, or None (no control file: no Wi-Fi world)."""
    path = os.getenv("OTASIM_FLASH")
    if not path:
        return None
    try:
        with open(path + ".net") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def country(code=None):
    global _country
    if code is None:
        return _country
    if len(code) != 2:
        raise ValueError
    _country = code


def hostname(name=None):
    global _hostname
    if name is None:
        return _hostname
    if len(name) > 32:  # MICROPY_PY_NETWORK_HOSTNAME_MAX_LEN
        raise ValueError
    _hostname = name


class WLAN:
    IF_STA = STA_IF
    IF_AP = AP_IF
    PM_NONE = 0
    PM_PERFORMANCE = 1
    PM_POWERSAVE = 2

    def __new__(cls, interface=STA_IF):
        if interface not in (STA_IF, AP_IF):
            raise ValueError("invalid WLAN interface identifier")
        if _interfaces[interface] is None:
            _interfaces[interface] = object.__new__(cls)
            _interfaces[interface]._setup(interface)
        return _interfaces[interface]  # the port returns one static object per interface

    def __init__(self, interface=STA_IF):
        pass

    def _setup(self, interface):
        self._if = interface
        self._active = False
        self._requested = False
        self._connected = False
        self._reason = 0
        self._since = time.ticks_ms()
        self._ssid = ""
        self._key = ""
        self._reconnects = 0  # config(reconnects=): 0 tries for ever
        self._tries = 0
        self._static = None
        self._pm = 1

    # --- the link, from the control file ---
    def _refresh(self):
        if self._if != STA_IF or not (self._active and self._requested):
            return
        if self._reconnects and self._tries >= self._reconnects:
            return  # the port stopped calling esp_wifi_connect()
        now = time.ticks_ms()
        ap = _control()
        waited = time.ticks_diff(now, self._since)
        if not ap or not ap.get("up", True) or ap.get("ssid") != self._ssid:
            if self._connected:
                self._drop(STAT_BEACON_TIMEOUT, now)
            elif waited >= _SCAN_MS:
                self._drop(STAT_NO_AP_FOUND, now)
            return
        if ap.get("password", "") != self._key:
            if waited >= _SCAN_MS:
                self._drop(STAT_WRONG_PASSWORD, now)
            return
        if not self._connected and waited >= _ASSOC_MS + ap.get("delay_ms", 0):
            self._connected = True  # IP_EVENT_STA_GOT_IP
            self._reason = 0
            self._tries = 0

    def _drop(self, reason, now):
        """WIFI_EVENT_STA_DISCONNECTED: the port records why and tries again."""
        self._connected = False
        self._reason = reason
        self._since = now
        self._tries += 1

    # --- the port's API ---
    def active(self, is_active=None):
        if is_active is None:
            return self._active
        self._active = bool(is_active)
        if not self._active:
            self._connected = False
            self._requested = False
            self._reason = 0
        return self._active

    def connect(self, ssid=None, key=None, *, bssid=None):
        if not self._active:
            raise OSError("Wifi Not Started")  # esp_exceptions(ESP_ERR_WIFI_NOT_STARTED)
        if self._if != STA_IF:
            raise OSError("Wifi Invalid Mode")
        if bssid is not None and len(bssid) != 6:
            raise ValueError
        if ssid is not None or key is not None:
            # network_wlan_connect(): with arguments, a fresh wifi_config_t (all zero) takes
            # what is given, so a missing key means an open network, not the previous key.
            self._ssid = (ssid or "")[:32]
            self._key = (key or "")[:64]
        self._requested = True
        self._connected = False
        self._tries = 0
        self._since = time.ticks_ms()
        _on_air("connect " + self._ssid)

    def disconnect(self):
        self._requested = False
        if self._active:
            self._connected = False
            self._reason = _REASON_ASSOC_LEAVE

    def isconnected(self):
        self._refresh()
        return self._connected

    def status(self, param=None):
        if param is not None:
            if param == "rssi":
                self._refresh()
                if not self._connected:
                    raise OSError("Wifi Not Connected")
                return -58
            raise ValueError("unknown status param")
        if self._if != STA_IF:
            return None
        self._refresh()
        r = self._reason
        if self._connected:
            return STAT_GOT_IP
        if r in (STAT_NO_AP_FOUND, 210, 211, 212):
            return r
        if r in (STAT_WRONG_PASSWORD, _REASON_CONNECTION_FAIL):
            return STAT_WRONG_PASSWORD
        if r == _REASON_ASSOC_LEAVE:
            return STAT_IDLE
        if self._requested and (self._reconnects == 0 or self._tries < self._reconnects):
            return STAT_CONNECTING
        return STAT_IDLE if r == 0 else r

    def _addresses(self):
        if self._static:
            return self._static
        if self._if == AP_IF:
            return (_SUBNET + "1", "255.255.255.0", _SUBNET + "1", "0.0.0.0")
        if not self._connected:
            return ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")
        return ("192.168.1.50", "255.255.255.0", "192.168.1.1", "192.168.1.1")

    def ifconfig(self, config=None):
        self._refresh()
        if config is None:
            return self._addresses()
        if not isinstance(config, (tuple, list)) or len(config) != 4:
            raise ValueError("requested length 4 but object has length %d" % len(config))
        if config[1] in range(33):  # a numeric netmask: 24 -> 255.255.255.0
            bits = (0xFFFFFFFF << (32 - config[1])) & 0xFFFFFFFF
            config = (config[0], ".".join(str(bits >> s & 0xFF) for s in (24, 16, 8, 0)), config[2], config[3])
        self._static = tuple(config)

    def ipconfig(self, *args, **kwargs):
        if args and kwargs:
            raise TypeError("either pos or kw args are allowed")
        self._refresh()
        if kwargs:
            for key, value in kwargs.items():
                if key == "dhcp4":
                    if value:
                        self._static = None
                    elif self._static is None:
                        self._static = self._addresses()
                elif key == "addr4":
                    ip, mask = value.split("/") if isinstance(value, str) else value
                    old = self._addresses()
                    self.ifconfig((ip, int(mask) if isinstance(mask, str) and mask.isdigit() else mask, old[2], old[3]))
                elif key == "gw4":
                    old = self._addresses()
                    self._static = (old[0], old[1], value, old[3])
                else:
                    raise ValueError("unexpected keyword argument '%s'" % key)
            return None
        if len(args) != 1:
            raise TypeError("can query only one param")
        ip, mask, gw, _ = self._addresses()
        if args[0] == "dhcp4":
            return self._static is None
        if args[0] == "addr4":
            return (ip, mask)
        if args[0] == "gw4":
            return gw
        raise ValueError("unexpected key")

    def config(self, *args, **kwargs):
        if args and kwargs:
            raise TypeError("either pos or kw args are allowed")
        for key, value in kwargs.items():
            if key in ("ssid", "essid"):
                self._ssid = value
            elif key in ("key", "password"):
                self._key = value
            elif key in ("hostname", "dhcp_hostname"):
                hostname(value)
            elif key == "reconnects":
                self._reconnects = 0 if value == -1 else max(0, value)
            elif key == "pm":
                self._pm = value
            elif key in ("txpower", "channel", "hidden", "security", "authmode", "protocol", "max_clients"):
                pass  # radio settings the simulated world does not model
            else:
                raise ValueError("unknown config param")
        if kwargs:
            return None
        if len(args) != 1:
            raise TypeError("can query only one param")
        key = args[0]
        if key == "mac":
            import machine

            mac = bytearray(machine.unique_id())
            if self._if == AP_IF:
                mac[-1] = (mac[-1] + 1) & 0xFF  # the softAP MAC is the station MAC + 1
            return bytes(mac)
        if key in ("ssid", "essid"):
            return self._ssid
        if key in ("hostname", "dhcp_hostname"):
            return _hostname
        if key == "reconnects":
            return self._reconnects
        if key == "pm":
            return self._pm
        if key == "channel":
            return 1
        raise ValueError("unknown config param")


_interfaces = [None, None]


def link_up():
    """For the simulated socket layer: may the board reach the network now? Without a Wi-Fi
    world (no control file) yes; with one, only while the station has its IP."""
    if _control() is None:
        return True
    return _interfaces[STA_IF] is not None and _interfaces[STA_IF].isconnected()
