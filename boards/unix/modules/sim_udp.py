"""Datagram sockets of a simulated board (socket.py wraps the unix port's): as the esp32 port's
in two more ways.

A receive that runs out of its timeout raises ETIMEDOUT (ports/esp32/modsocket.c,
_socket_read_data(); the unix port says EAGAIN). And the test's world may forward datagrams, as
a router forwards a port: the control file OTASIM_FLASH + ".nat" maps "ip:port" the board
addresses to "ip:port" where the test's server listens, and replies come back as from the
address the board used. So a board keeps a well-known port (NTP's 123) that the test could
only open as root, and that another run on the machine could hold.
"""
import errno
import json
import os


def _forwarding():
    path = os.getenv("OTASIM_FLASH")
    try:
        with open(path + ".nat") as f:
            return json.load(f)
    except (TypeError, OSError, ValueError):
        return {}


def _name(address):
    """'ip:port' of a unix-port sockaddr (family, port, IPv4 address)."""
    return "%d.%d.%d.%d:%d" % (address[4], address[5], address[6], address[7], address[2] << 8 | address[3])


def _retarget(address, rules):
    """The sockaddr with its IPv4 address and port replaced as `rules` say, else unchanged."""
    to = rules.get(_name(address)) if rules and len(address) >= 8 else None
    if to is None:
        return address
    ip, port = to.rsplit(":", 1)
    out = bytearray(address)
    out[2], out[3] = int(port) >> 8, int(port) & 0xFF
    out[4:8] = bytes(int(part) for part in ip.split("."))
    return out


class Datagram:
    """A UDP socket with the esp32 port's timeout error and the world's forwarding rules; the
    rest is the unix port's socket."""

    def __init__(self, sock):
        self._sock = sock
        self._out = _forwarding()
        self._back = {to: name for name, to in self._out.items()}
        self._timeout = None

    def __getattr__(self, name):
        return getattr(self._sock, name)

    def settimeout(self, value):
        self._timeout = value
        self._sock.settimeout(value)

    def setblocking(self, flag):
        self._timeout = None if flag else 0
        self._sock.setblocking(flag)

    def connect(self, address):
        self._sock.connect(_retarget(address, self._out))

    def sendto(self, data, address):
        return self._sock.sendto(data, _retarget(address, self._out))

    def recv(self, size, *flags):
        try:
            return self._sock.recv(size, *flags)
        except OSError as exc:
            raise self._error(exc)

    def recvfrom(self, size, *flags):
        try:
            data, source = self._sock.recvfrom(size, *flags)
        except OSError as exc:
            raise self._error(exc)
        return data, _retarget(source, self._back)

    def _error(self, exc):
        if exc.errno == errno.EAGAIN and self._timeout:
            return OSError(errno.ETIMEDOUT)  # a timeout ran out; EAGAIN only when non-blocking
        return exc
