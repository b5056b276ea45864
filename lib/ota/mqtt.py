"""A small MQTT 3.1.1 client for MicroPython, close to `umqtt.simple` in use.

What it adds for a device that must stay up for months on little RAM:
- every incoming PUBLISH lands in one preallocated buffer; the callback gets
  `(topic, memoryview)` valid only during the call. A PUBLISH larger than the buffer is read and
  thrown away in buffer-sized pieces and counted in `oversized`, never allocated;
- every socket wait is bounded (`timeout` seconds once a packet has started, and the caller's
  `timeout_ms` before that), so a dead link raises instead of hanging;
- keepalive pings are sent from `wait_msg`/`check_msg`, and a missing PINGRESP is a dead link;
- QoS 0 and 1 both ways (QoS 1 publishes wait for their PUBACK), TLS through a
  `tls.SSLContext` the application configured (CA, optional client certificate);
- `reconnect(backoff)`: close, wait a growing jittered delay, connect again.
"""
import random
import socket
import struct
import time

from micropython import const

from ota.errors import OTAError
from ota.netopt import nodelay

try:
    import select
except ImportError:
    import uselect as select  # type: ignore[no-redef]  # older firmware may offer only uselect

_CONNECT = const(0x10)
_CONNACK = const(0x20)
_PUBLISH = const(0x30)
_PUBACK = const(0x40)
_SUBSCRIBE = const(0x82)
_SUBACK = const(0x90)
_UNSUBSCRIBE = const(0xA2)
_UNSUBACK = const(0xB0)
_PINGREQ = const(0xC0)
_PINGRESP = const(0xD0)
_DISCONNECT = const(0xE0)

_OUT = const(256)  # outgoing packets up to this size are sent in one write
_SMALL = const(16)  # largest non-PUBLISH packet body we accept (acks, CONNACK, small SUBACK)
_MAX_REMAINING = const(268435455)  # MQTT's own limit for the remaining-length field


class MQTTError(OTAError):
    """The link or the broker failed us. `reason`: "closed", "timeout", "protocol", "tls"
    (the server certificate did not verify), "refused" (CONNACK return code in `detail`) or
    "sub_refused"."""

    reason = "mqtt"


class Backoff:
    """Growing, jittered delays between reconnect attempts, so a fleet that lost its broker
    does not come back all in the same second."""

    def __init__(self, first_ms=500, max_ms=60000):
        self.first_ms = first_ms
        self.max_ms = max_ms
        self.delay_ms = first_ms

    def reset(self):
        self.delay_ms = self.first_ms

    def next_ms(self):
        d = self.delay_ms
        self.delay_ms = min(d * 2, self.max_ms)
        return d // 2 + random.getrandbits(16) % (d // 2 + 1)


def _text(s):
    return s.encode() if isinstance(s, str) else s


class MQTTClient:
    """One broker connection. `bufsize` bounds the largest payload kept; `topic_size` the
    largest topic; `timeout` (s) bounds each socket wait once a packet is under way."""

    def __init__(self, client_id, server, port=0, user=None, password=None, keepalive=0, ssl=None,
                 server_hostname=None, bufsize=4224, topic_size=128, timeout=10):
        self.client_id = _text(client_id)
        self.server = server
        self.port = port or (8883 if ssl else 1883)
        self.user = _text(user)
        self.pswd = _text(password)
        self.keepalive = keepalive
        self.ssl = ssl
        self.server_hostname = server_hostname or server
        self.timeout = timeout
        self.buf = bytearray(bufsize)
        self.mv = memoryview(self.buf)
        self.tbuf = bytearray(topic_size)
        self.tmv = memoryview(self.tbuf)
        self.small = bytearray(_SMALL)
        self.smv = memoryview(self.small)
        self.hdr = bytearray(7)
        self.obuf = bytearray(_OUT)  # one small packet goes out in one write (no Nagle stalls)
        self.olen = 0
        self.cb = None
        self.on_oversize = None
        self.oversized = 0
        self.lw = None
        self.sock = None
        self.poller = None
        self.pid = 0
        self.acked = -1
        self.last_tx = time.ticks_ms()
        self.ping_at = None  # ticks when an unanswered PINGREQ went out

    # --- configuration, as in umqtt.simple ---
    def set_callback(self, f):
        """`f(topic_bytes, payload_memoryview)`; copy the payload if you keep it."""
        self.cb = f

    def set_oversize_callback(self, f):
        """`f(topic_bytes_or_None, size)` for a PUBLISH that did not fit and was discarded."""
        self.on_oversize = f

    def set_last_will(self, topic, msg, retain=False, qos=0):
        self.lw = (_text(topic), _text(msg), retain, qos)

    # --- connection ---
    def connect(self, clean_session=True, timeout=None):
        """Open the link and send CONNECT; returns the broker's session-present flag."""
        self.close()
        addr = socket.getaddrinfo(self.server, self.port, 0, socket.SOCK_STREAM)[0][-1]
        sock = socket.socket()
        try:
            # Bounds the TCP connect and the TLS handshake; TLS sockets inherit it for reads.
            sock.settimeout(timeout or self.timeout)
            sock.connect(addr)
            nodelay(sock)  # before TLS wraps it: small packets go out at once (ota.netopt)
            if self.ssl:
                sock = self.ssl.wrap_socket(sock, server_hostname=self.server_hostname)
        except ValueError as e:  # mbedtls reports a certificate that fails verification so
            sock.close()
            raise MQTTError("tls", str(e).strip())
        except Exception:
            sock.close()
            raise
        self.sock = sock
        self.poller = select.poll()
        self.poller.register(sock, select.POLLIN)
        self.ping_at = None
        try:
            return self._handshake(clean_session)
        except Exception:
            self.close()
            raise

    def _handshake(self, clean_session):
        flags = 0x02 if clean_session else 0
        size = 10 + 2 + len(self.client_id)
        if self.lw:
            topic, msg, retain, qos = self.lw
            flags |= 0x04 | (qos & 1) << 3 | (0x20 if retain else 0)
            size += 4 + len(topic) + len(msg)
        if self.user is not None:
            flags |= 0x80
            size += 2 + len(self.user)
        if self.pswd is not None:
            flags |= 0x40
            size += 2 + len(self.pswd)
        self._send_header(_CONNECT, size)
        self._send(b"\x00\x04MQTT\x04")
        self._send(struct.pack("!BH", flags, self.keepalive))
        self._send_str(self.client_id)
        if self.lw:
            self._send_str(self.lw[0])
            self._send_str(self.lw[1])
        if self.user is not None:
            self._send_str(self.user)
        if self.pswd is not None:
            self._send_str(self.pswd)
        self._flush()
        op = self._recv(self.timeout * 1000)
        if op is None:
            raise MQTTError("timeout", "no CONNACK")
        if op != _CONNACK:
            raise MQTTError("protocol", "no CONNACK")
        if self.small[1]:
            raise MQTTError("refused", self.small[1])
        return self.small[0] & 1

    def disconnect(self):
        try:
            self._send(b"\xe0\x00")
            self._flush()
        finally:
            self.close()

    def close(self):
        """Drop the socket without a DISCONNECT (the broker then sends the last will)."""
        if self.sock:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self.poller = None
        self.olen = 0

    def reconnect(self, backoff=None, attempts=0, clean_session=True):
        """Connect again after a failure, waiting `backoff.next_ms()` between tries; gives up
        (re-raising the last error) after `attempts` tries if that is not 0."""
        backoff = backoff or Backoff()
        tries = 0
        while True:
            try:
                present = self.connect(clean_session)
                backoff.reset()
                return present
            except (OSError, OTAError):
                tries += 1
                if attempts and tries >= attempts:
                    raise
            time.sleep_ms(backoff.next_ms())

    # --- outgoing ---
    def _next_pid(self):
        self.pid = self.pid % 65535 + 1
        return self.pid

    def ping(self):
        self._send(b"\xc0\x00")
        self._flush()
        if self.ping_at is None:
            self.ping_at = time.ticks_ms()

    def publish(self, topic, msg, retain=False, qos=0):
        topic = _text(topic)
        msg = _text(msg)
        if qos not in (0, 1):
            raise ValueError("qos")
        size = 2 + len(topic) + len(msg) + (2 if qos else 0)
        self._send_header(_PUBLISH | qos << 1 | (1 if retain else 0), size)
        self._send_str(topic)
        if qos:
            pid = self._next_pid()
            self._send(struct.pack("!H", pid))
        self._send(msg)
        self._flush()
        if qos:
            self._wait_ack(_PUBACK, pid)

    def subscribe(self, topic, qos=0):
        topic = _text(topic)
        pid = self._next_pid()
        self._send_header(_SUBSCRIBE, 2 + 2 + len(topic) + 1)
        self._send(struct.pack("!H", pid))
        self._send_str(topic)
        self._send(bytes((qos,)))
        self._flush()
        self._wait_ack(_SUBACK, pid)
        if self.small[2] & 0x80:
            raise MQTTError("sub_refused", topic)

    def unsubscribe(self, topic):
        topic = _text(topic)
        pid = self._next_pid()
        self._send_header(_UNSUBSCRIBE, 2 + 2 + len(topic))
        self._send(struct.pack("!H", pid))
        self._send_str(topic)
        self._flush()
        self._wait_ack(_UNSUBACK, pid)

    def _wait_ack(self, kind, pid):
        start = time.ticks_ms()
        limit = self.timeout * 1000
        while True:
            left = limit - time.ticks_diff(time.ticks_ms(), start)
            if left <= 0:
                raise MQTTError("timeout", "no ack")
            if self.wait_msg(left) == kind and self.acked == pid:
                return

    def _send_header(self, op, size):
        if size > _MAX_REMAINING:
            raise ValueError("packet too large")
        self.hdr[0] = op
        i = 1
        while True:
            b = size & 0x7F
            size >>= 7
            self.hdr[i] = b | (0x80 if size else 0)
            i += 1
            if not size:
                break
        self._send(memoryview(self.hdr)[:i])

    def _send_str(self, s):
        self._send(struct.pack("!H", len(s)))
        self._send(s)

    def _send(self, data):
        """Stage `data`; `_flush()` ends each packet. Big payloads go straight out."""
        n = len(data)
        if self.olen + n > len(self.obuf):
            self._flush()
            if n > len(self.obuf):
                self._write(data)
                return
        self.obuf[self.olen:self.olen + n] = data
        self.olen += n

    def _flush(self):
        if self.olen:
            n, self.olen = self.olen, 0
            self._write(memoryview(self.obuf)[:n])

    def _write(self, data):
        if self.sock is None:
            raise MQTTError("closed", "not connected")
        mv = memoryview(data)
        while mv:
            n = self.sock.write(mv)
            if not n:
                raise MQTTError("timeout", "send")
            mv = mv[n:]
        self.last_tx = time.ticks_ms()

    # --- incoming ---
    def check_msg(self):
        """Handle one waiting packet, if any, without blocking; keeps the keepalive going."""
        return self.wait_msg(0)

    def wait_msg(self, timeout_ms=None):
        """Handle one incoming packet, waiting at most `timeout_ms` (None: until one comes).
        Returns the packet type handled (0x30 for a PUBLISH), or None when the time ran out."""
        start = time.ticks_ms()
        while True:
            step = self._keep_alive()
            final = False
            if timeout_ms is not None:
                left = max(0, timeout_ms - time.ticks_diff(time.ticks_ms(), start))
                if left <= step:
                    step, final = left, True
            op = self._recv(step)
            if op is not None or final:
                return op

    def _keep_alive(self):
        """Ping when the link has been quiet for half the keepalive; return ms until next check."""
        if not self.keepalive:
            return 1000
        now = time.ticks_ms()
        period = self.keepalive * 1000
        if self.ping_at is not None and time.ticks_diff(now, self.ping_at) > period:
            self.close()
            raise MQTTError("timeout", "no PINGRESP")
        idle = time.ticks_diff(now, self.last_tx)
        if idle >= period // 2:
            self.ping()
            idle = 0
        return max(10, min(1000, period // 2 - idle))

    def _wait_readable(self, ms):
        if self.poller is None:
            raise MQTTError("closed", "not connected")
        for _, ev in self.poller.poll(ms):
            if ev & (select.POLLHUP | select.POLLERR) and not ev & select.POLLIN:
                self.close()
                raise MQTTError("closed", "hangup")
            return True
        return False

    def _read(self, mv):
        """Fill `mv` exactly, each wait bounded by `timeout`."""
        sock = self.sock
        if sock is None:
            raise MQTTError("closed", "not connected")
        got = 0
        want = len(mv)
        while got < want:
            if not self._wait_readable(self.timeout * 1000):
                self.close()
                raise MQTTError("timeout", "read")
            n = sock.readinto(mv[got:])
            if n is None:
                continue
            if not n:
                self.close()
                raise MQTTError("closed", "eof")
            got += n

    def _read_byte(self):
        self._read(self.smv[:1])
        return self.small[0]

    def _recv(self, wait_ms):
        """Read one packet if one starts within `wait_ms`; returns its type or None."""
        if not self._wait_readable(wait_ms):
            return None
        op = self._read_byte()
        size = 0
        shift = 0
        while True:
            b = self._read_byte()
            size |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
            if shift > 21:
                self.close()
                raise MQTTError("protocol", "length")
        kind = op & 0xF0
        if kind == _PUBLISH:
            self._recv_publish(op, size)
            return _PUBLISH
        if size > _SMALL:
            self.close()
            raise MQTTError("protocol", "packet 0x%02x of %d bytes" % (op, size))
        self._read(self.smv[:size])
        if kind == _PINGRESP:
            self.ping_at = None
        elif kind in (_PUBACK, _SUBACK, _UNSUBACK):
            self.acked = self.small[0] << 8 | self.small[1]
        elif kind != _CONNACK:
            self.close()
            raise MQTTError("protocol", "unexpected 0x%02x" % op)
        return kind

    def _recv_publish(self, op, size):
        qos = (op >> 1) & 3
        if qos > 1:
            self.close()
            raise MQTTError("protocol", "qos 2")
        self._read(self.smv[:2])
        tlen = self.small[0] << 8 | self.small[1]
        left = size - 2 - tlen - (2 if qos else 0)
        if left < 0:
            self.close()
            raise MQTTError("protocol", "publish length")
        topic = None
        if tlen <= len(self.tbuf):
            self._read(self.tmv[:tlen])
            topic = bytes(self.tmv[:tlen])
        else:
            self._discard(tlen)
        if qos:
            self._read(self.smv[:2])
            pid = self.small[0] << 8 | self.small[1]
        if topic is not None and left <= len(self.buf):
            self._read(self.mv[:left])
            if self.cb:
                self.cb(topic, self.mv[:left])
        else:
            self._discard(left)
            self.oversized += 1
            if self.on_oversize:
                self.on_oversize(topic, left)
        if qos:
            self._send(struct.pack("!BBH", _PUBACK, 2, pid))
            self._flush()

    def _discard(self, n):
        while n:
            step = min(n, len(self.buf))
            self._read(self.mv[:step])
            n -= step
