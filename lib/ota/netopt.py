"""TCP_NODELAY for an MQTT link: a client that writes one packet in pieces (header, then
payload) otherwise waits for the broker's delayed ACK (about 40 ms on Linux) on every QoS 1
publish and subscribe, which is most of a chunk request's time (bench/bench_async.py)."""
import socket

# The unix port has no constants for these; the values are Linux's. The lwIP ports name both, and
# they differ: esp32 passes TCP_NODELAY (1) to lwip_setsockopt (ports/esp32/modsocket.c,
# socket_setsockopt); rp2's raw-lwIP sockets take TF_NODELAY (0x40) and warn on anything else
# (extmod/modlwip.c, lwip_socket_setsockopt).
_IPPROTO_TCP = getattr(socket, "IPPROTO_TCP", 6)
_TCP_NODELAY = getattr(socket, "TCP_NODELAY", 1)


def nodelay(sock):
    """Turn Nagle's algorithm off on a plain socket; a no-op on what cannot (a TLS object)."""
    try:
        sock.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
    except (OSError, AttributeError, TypeError):
        pass
