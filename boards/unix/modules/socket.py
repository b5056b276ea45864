"""`socket` of a simulated board: the unix port's own sockets, refused while the board's Wi-Fi
station has no link (see network.py), as lwIP refuses a connection with no interface up.

A link that drops under an open connection is the access point's business on the test side:
it stops carrying the bytes, as a vanished AP does, and the connection dies by its own timeouts.

Datagram sockets are the esp32 port's in two more ways. A receive that runs out of its timeout
raises ETIMEDOUT (the port's _socket_read_data(); the unix port says EAGAIN). And the test's
world may forward datagrams, as a router does: the control file OTASIM_FLASH + ".nat" maps
"ip:port" the board addresses to "ip:port" where the test's server listens, and replies come
back as from the address the board used. So a board talks to a well-known port (NTP's 123)
that the test could only open as root, and no other test's server.
"""
import errno
import json
import os

from usocket import *  # noqa: F401,F403  (the unix port's socket is extensible)
import usocket as _host


def _world(suffix):
    """A control file the test keeps beside the flash file, or None. Checked before anything
    is imported for it, so boards without one do not carry it on their heap."""
    path = os.getenv("OTASIM_FLASH")
    if not path:
        return None
    try:
        os.stat(path + suffix)
    except OSError:
        return None
    return path + suffix


def _forwarding():
    path = _world(".nat")
    if path is None:
        return {}
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _name(address):
    """'ip:port' of a unix-port sockaddr (family, port, IPv4 address)."""
    return "%d.%d.%d.%d:%d" % (address[4], address[5], address[6], address[7], address[2] << 8 | address[3])


def _retarget(address, rules):
    """The sockaddr with its IPv4 address and port replaced as `rules` say, else unchanged."""
    to = rules.get(_name(address)) if len(address) >= 8 else None
    if to is None:
        return address
    ip, port = to.rsplit(":", 1)
    out = bytearray(address)
    out[2], out[3] = int(port) >> 8, int(port) & 0xFF
    out[4:8] = bytes(int(part) for part in ip.split("."))
    return out


class _Datagram:
    """A UDP socket with the esp32 port's timeout error and the world's forwarding rules; the
    rest is the unix port's socket."""

    def __init__(self, sock, rules):
        self._sock = sock
        self._out = rules
        self._back = {to: name for name, to in rules.items()}
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


def socket(*args):
    if _world(".net"):
        import network

        if not network.link_up():
            raise OSError(errno.EHOSTUNREACH)
    sock = _host.socket(*args)
    if len(args) > 1 and args[1] == SOCK_DGRAM:  # noqa: F405
        return _Datagram(sock, _forwarding())
    return sock
