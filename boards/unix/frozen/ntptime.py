# The ntptime module ESP32_GENERIC freezes (bundle-networking), as board glue: one SNTP
# exchange (RFC 5905) with `host` on UDP port 123, bounded by `timeout` seconds. time() is the
# server's transmit time in seconds since the port's epoch; settime() puts it in the RTC, in
# UTC (the port has no time zones). A server that stays silent makes recv() raise OSError.
import socket
import struct
from time import gmtime

host = "pool.ntp.org"
timeout = 1

_NTP_PORT = 123
_PACKET = 48  # the fixed header; no extension fields or MAC
_CLIENT_V4 = 0x23  # first octet: leap 0, version 4, mode 3 (client)
_TRANSMIT = 40  # offset of the transmit timestamp's 32-bit seconds
# NTP seconds wrap in February 2036 (era 1). A reading before 2024-01-01 cannot be a real
# answer to this code, so it is taken as era 1, which keeps the clock right until 2160.
_ERA_PIVOT = 3913056000


def _since_1900(year):
    """Seconds from 1900-01-01 (start of NTP era 0) to 1 January of `year`."""
    def leap_days(y):
        return y // 4 - y // 100 + y // 400

    return (365 * (year - 1900) + leap_days(year - 1) - leap_days(1899)) * 86400


def time():
    """Ask `host` once; seconds since the port's epoch (2000 on the esp32 port)."""
    query = bytearray(_PACKET)
    query[0] = _CLIENT_V4
    address = socket.getaddrinfo(host, _NTP_PORT)[0][-1]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        s.sendto(query, address)
        reply = s.recv(_PACKET)
    finally:
        s.close()
    ntp = struct.unpack("!I", reply[_TRANSMIT:_TRANSMIT + 4])[0]
    if ntp < _ERA_PIVOT:
        ntp += 1 << 32
    return ntp - _since_1900(gmtime(0)[0])


def settime():
    """Set the RTC from `host` (UTC)."""
    import machine

    t = gmtime(time())
    # RTC.datetime() order: year, month, day, weekday (1-7 here; the esp32 port ignores it
    # when setting), hours, minutes, seconds, subseconds
    machine.RTC().datetime((t[0], t[1], t[2], t[6] + 1, t[3], t[4], t[5], 0))
