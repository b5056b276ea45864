"""MQTT 3.1.1 packets as a broker sends them, for the tests that play a broker's part: the
hostile broker (CPython, hostile_broker.py) and the client fuzz target (MicroPython,
fuzz_targets.py). Both runtimes import this module: only bytes, bytearray and struct."""
import struct


def packet(op, body=b""):
    """Fixed header (type and flags `op`, remaining length) and `body`."""
    size, head = len(body), bytearray([op])
    while True:
        b = size & 0x7F
        size >>= 7
        head.append(b | (0x80 if size else 0))
        if not size:
            return bytes(head) + body


def publish(topic, payload, qos=0, pid=1, retain=False):
    """A PUBLISH; packet id `pid` when `qos` is 1 or 2."""
    body = struct.pack("!H", len(topic)) + topic + (struct.pack("!H", pid) if qos else b"") + payload
    return packet(0x30 | qos << 1 | (1 if retain else 0), body)
