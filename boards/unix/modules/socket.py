"""`socket` of a simulated board: the unix port's own sockets, refused while the board's Wi-Fi
station has no link (see network.py), as lwIP refuses a connection with no interface up.

A link that drops under an open connection is the access point's business on the test side:
it stops carrying the bytes, as a vanished AP does, and the connection dies by its own timeouts.
Datagram sockets come wrapped (sim_udp.py): the port's receive timeout error, and the test
world's forwarding.
"""
import errno
import os

from usocket import *  # noqa: F401,F403  (the unix port's socket is extensible)
import usocket as _host


def _wifi_world():
    """Does the test give this board a Wi-Fi world (network.py's control file)? Checked before
    importing network, so boards without one do not carry it on their heap."""
    path = os.getenv("OTASIM_FLASH")
    try:
        return bool(path) and bool(os.stat(path + ".net"))
    except OSError:
        return False


def socket(*args):
    if _wifi_world():
        import network

        if not network.link_up():
            raise OSError(errno.EHOSTUNREACH)
    sock = _host.socket(*args)
    if len(args) > 1 and args[1] == SOCK_DGRAM:  # noqa: F405
        from sim_udp import Datagram  # loaded on first use, as network is

        return Datagram(sock)
    return sock
