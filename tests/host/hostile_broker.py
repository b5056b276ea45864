"""A broker that misbehaves on purpose: it speaks just enough MQTT 3.1.1 to get a device going
(CONNACK, SUBACK, UNSUBACK, PUBACK, PINGRESP, retained messages sent on SUBSCRIBE) and then does
one hostile thing, the cases of a broker or network the device must survive without hanging
its application or hammering the broker:

- `mute`: accepts the connection and never sends a byte (no CONNACK, no TLS handshake);
- `dribble`: after the manifests' SUBACK, a PUBLISH trickles in one byte every `pace` seconds;
- `stall`: CONNACK, then silence (no SUBACK, no PINGRESP, nothing);
- `no_puback`: everything answered except the device's QoS 1 publishes;
- `refuse_sub`: every SUBSCRIBE refused (SUBACK 0x80);
- `reset`: CONNACK, then the connection is reset;
- `garbage`: CONNACK, then a packet type a broker never sends;
- `long_chunk`: chunk topics answered with one byte more than the chunk;
- `good`: none of that (the control case).

It records what it saw: `connections`, `subscribes` (topic -> count) and `publishes` (topics the
device published), for the tests' counts."""
import socket
import struct
import threading
import time
from collections import Counter

from mqtt_packets import packet, publish  # shared with fuzz_targets.py, which runs under MicroPython

MODES = ("mute", "dribble", "stall", "no_puback", "refuse_sub", "reset", "garbage", "long_chunk", "good")


def _read_packet(conn):
    """(first byte, body) of the next packet from the device, or None when it closed."""
    first = conn.recv(1)
    if not first:
        return None
    size, shift = 0, 0
    while True:
        b = conn.recv(1)
        if not b:
            return None
        size |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            break
        shift += 7
    body = b""
    while len(body) < size:
        more = conn.recv(size - len(body))
        if not more:
            return None
        body += more
    return first[0], body


def _topics(body, with_qos):
    """Packet id and topics of a SUBSCRIBE or UNSUBSCRIBE body."""
    pid, i, topics = struct.unpack("!H", body[:2])[0], 2, []
    while i < len(body):
        n = struct.unpack("!H", body[i:i + 2])[0]
        topics.append(body[i + 2:i + 2 + n])
        i += 2 + n + (1 if with_qos else 0)
    return pid, topics


class HostileBroker:
    """`HostileBroker(mode, retained={topic_bytes: payload})`; `.port`; `close()` after."""

    def __init__(self, mode, retained=None, pace=0.05):
        assert mode in MODES, mode
        self.mode = mode
        self.retained = dict(retained or {})
        self.pace = pace
        self.connections = 0
        self.subscribes = Counter()
        self.publishes = []
        self.closed = False
        self.lock = threading.Lock()
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.port = self.server.getsockname()[1]
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            self._session(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def _session(self, conn):
        mode, pid = self.mode, 0
        if mode == "mute":
            while not self.closed and conn.recv(4096):
                pass
            return
        first = _read_packet(conn)
        if first is None or first[0] != 0x10:
            return
        conn.sendall(packet(0x20, b"\x00\x00"))
        if mode == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        if mode == "garbage":
            conn.sendall(packet(0x60, b"\x00\x01"))  # PUBREL: QoS 2, never asked for
        while not self.closed:
            got = _read_packet(conn)
            if got is None:
                return
            op, body = got
            if mode == "stall":
                continue
            kind = op & 0xF0
            if kind == 0x80:
                sub_pid, topics = _topics(body, True)
                with self.lock:
                    self.subscribes.update(topics)
                code = b"\x80" if mode == "refuse_sub" else b"\x01"
                conn.sendall(packet(0x90, struct.pack("!H", sub_pid) + code * len(topics)))
                for topic in topics:
                    payload = self.retained.get(topic)
                    if payload is None:
                        continue
                    if mode == "long_chunk" and b"/fw/" in topic:
                        payload += b"\x00"
                    pid = pid % 65535 + 1
                    conn.sendall(publish(topic, payload, 1, pid, retain=True))
                if mode == "dribble" and any(b"/manifest/" in t for t in topics):
                    self._dribble(conn)  # and nothing else, ever
                    return
            elif kind == 0xA0:
                unsub_pid, _ = _topics(body, False)
                conn.sendall(packet(0xB0, struct.pack("!H", unsub_pid)))
            elif kind == 0x30:
                n = struct.unpack("!H", body[:2])[0]
                with self.lock:
                    self.publishes.append(body[2:2 + n])
                if op & 0x06 and mode != "no_puback":
                    conn.sendall(packet(0x40, body[2 + n:4 + n]))
            elif kind == 0xC0:
                conn.sendall(packet(0xD0))
            elif kind == 0xE0:
                return

    def _dribble(self, conn):
        data = publish(b"app/slow", b"x" * 4000, retain=True)
        for i in range(len(data)):
            if self.closed:
                return
            conn.sendall(data[i:i + 1])
            time.sleep(self.pace)

    def close(self):
        self.closed = True
        self.server.close()
        with self.lock:
            for conn in self.conns:
                try:
                    conn.close()
                except OSError:
                    pass
