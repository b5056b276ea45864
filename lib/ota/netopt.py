"""TCP_NODELAY for an MQTT link: a client that writes one packet in pieces (header, then
payload) otherwise waits for the broker's delayed ACK (about 40 ms on Linux) on every QoS 1
publish and subscribe, which is most of a chunk request's time (bench/bench_async.py)."""
from micropython import const

_IPPROTO_TCP = const(6)  # the values lwIP and Linux use; not every port's socket module names them
_TCP_NODELAY = const(1)


def nodelay(sock):
    """Turn Nagle's algorithm off on a plain socket; a no-op on what cannot (a TLS object)."""
    try:
        sock.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
    except (OSError, AttributeError, TypeError):
        pass
