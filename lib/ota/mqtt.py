"""A small MQTT 3.1.1 client for MicroPython, close to `umqtt.simple` in use.

What it adds for a device that must stay up for months on little RAM:
- one receive buffer, allocated with the client: packets are parsed out of it, so a burst of
  messages costs one socket read, not several per packet. The callback gets `(topic,
  memoryview)`, the view valid only during the call. A PUBLISH larger than the buffer is
  skipped as it streams in and counted in `oversized`, never allocated;
- `TCP_NODELAY`, and outgoing packets staged in one buffer and written together: a round of
  acknowledgements and (un)subscriptions goes out in one write, never held back by Nagle;
- time budgets: `wait_msg(timeout_ms)` returns within its budget whatever the broker does (a
  packet cut short stays in the buffer for the next call); a packet that takes longer than
  `timeout` seconds to arrive, an acknowledgement or PINGRESP missing for `timeout`, or a
  socket that takes nothing for `timeout` is a dead link;
- pipelining: `queue_publish`/`queue_subscribe`/`queue_unsubscribe` stage a packet and return
  its id without waiting; `flush()` sends; acknowledgements come through `wait_msg` and the ack
  callback. `publish`/`subscribe`/`unsubscribe` are the waiting, umqtt-like forms;
- TLS through a `tls.SSLContext` the application configured (CA, optional client certificate);
- `reconnect(backoff)`: close, wait a growing jittered delay, connect again.

Do not call a waiting method from inside the message callback: the payload view lives in the
receive buffer that such a call reads into.
"""
import random
import socket
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

_OUT = const(512)  # staged outgoing bytes: a round of acks and (un)subscriptions, or most of one
_CTRL = const(64)  # largest non-PUBLISH packet body accepted (acks, CONNACK, SUBACK of a few topics)
_HEAD = const(16)  # receive buffer beyond topic and payload: fixed header, topic length, packet id
_MAX_REMAINING = const(268435455)  # MQTT's own limit for the remaining-length field
_STEP_MS = const(1000)  # longest single socket wait: keepalive and deadlines are checked between



class MQTTError(OTAError):
    """The link or the broker failed us. `reason`: "closed", "timeout", "protocol", "tls"
    (the server certificate did not verify), "refused" (CONNACK return code in `detail`) or
    "sub_refused"."""

    reason = "mqtt"


class Backoff:
    """Growing, jittered delays between reconnect attempts, so a fleet that lost its broker
    does not come back all in the same second. The caller calls `reset()` once a connection
    has proved useful, not merely once it is up: a broker that accepts and then fails keeps
    the delays growing."""

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
    largest topic; `timeout` (s) bounds the TCP connect and TLS handshake, each packet's
    arrival once it has started, and each acknowledgement."""

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
        self.bufsize = bufsize
        self.topic_size = topic_size
        self.rbuf = bytearray(bufsize + topic_size + _HEAD)
        self.rmv = memoryview(self.rbuf)
        self.buf = self.rmv[:bufsize]  # its length is the largest payload kept (what callers check)
        self.rs = 0  # first unparsed byte
        self.re = 0  # end of the bytes read
        self.need = 2  # bytes from rs the packet being parsed needs, at least
        self.skip = 0  # bytes of an oversized PUBLISH still to throw away
        self.part_at = None  # ticks when the buffer last held only part of a packet
        self.obuf = bytearray(_OUT)
        self.omv = memoryview(self.obuf)
        self.olen = 0
        self.wlen = 0  # a TLS write that could not finish must be retried with the same length
        self.cb = None
        self.on_oversize = None
        self.on_ack = None
        self.oversized = 0
        self.lw = None
        self.sock = None
        self.poller = None  # on the socket the client reads and writes (TLS or TCP)
        self.rpoller = None  # on the TCP socket: waits for incoming data
        self.pid = 0
        self.acked = -1
        self.granted = True
        self.session_present = None  # set by the CONNACK
        self.unacked = 0  # acknowledgements (CONNACK, PUBACK, SUBACK, UNSUBACK) still due
        self.ack_at = time.ticks_ms()  # of the last acknowledgement, or of the first one awaited
        self.last_tx = time.ticks_ms()
        self.ping_at = None  # ticks when an unanswered PINGREQ went out

    # --- configuration, as in umqtt.simple ---
    def set_callback(self, f):
        """`f(topic_bytes, payload_memoryview)`; copy the payload if you keep it."""
        self.cb = f

    def set_oversize_callback(self, f):
        """`f(topic_bytes_or_None, size)` for a PUBLISH that did not fit and was discarded."""
        self.on_oversize = f

    def set_ack_callback(self, f):
        """`f(kind, packet_id, granted)` for each PUBACK (0x40), SUBACK (0x90) and UNSUBACK
        (0xB0); `granted` is False for a SUBACK that refused any of its topics."""
        self.on_ack = f

    def set_last_will(self, topic, msg, retain=False, qos=0):
        self.lw = (_text(topic), _text(msg), retain, qos)

    # --- connection ---
    def open(self, clean_session=True, timeout=None):
        """Open the link and stage CONNECT without waiting for the CONNACK: `wait_msg` returns
        0x20 when it comes (and raises MQTTError "refused" for a refusal). The TCP connect is
        bounded by `timeout` (s); the TLS handshake runs inside the reads and writes that follow,
        within their budgets (the CONNACK is due within `timeout`)."""
        self.close()
        addr = socket.getaddrinfo(self.server, self.port, 0, socket.SOCK_STREAM)[0][-1]
        sock = raw = socket.socket()
        try:
            sock.settimeout(timeout or self.timeout)
            sock.connect(addr)
            nodelay(sock)  # before TLS wraps it: small packets go out at once (ota.netopt)
            if self.ssl:
                # The handshake then runs inside reads and writes, which report a certificate
                # that fails verification as ValueError (extmod/modtls_mbedtls.c,
                # ssl_check_async_handshake_failure).
                sock = self.ssl.wrap_socket(sock, server_hostname=self.server_hostname, do_handshake_on_connect=False)
            sock.setblocking(False)  # every wait from here on is a poll with a deadline
        except Exception:
            sock.close()
            raise
        self.sock = sock
        self.poller = select.poll()
        self.poller.register(sock, select.POLLIN)
        self.rpoller = self.poller
        if raw is not sock:
            # Incoming data is awaited on the TCP socket under TLS: a wait starts only after a
            # read found nothing, when mbedtls holds no decrypted bytes. The unix port's poll()
            # sleeps in one call on a socket, but checks an object without a file descriptor
            # (the TLS one) every millisecond (extmod/modselect.c,
            # poll_set_poll_until_ready_or_timeout).
            self.rpoller = select.poll()
            self.rpoller.register(raw, select.POLLIN)
        self.rs = self.re = self.skip = self.unacked = 0
        self.need = 2
        self.part_at = self.ping_at = self.session_present = None
        try:
            self._send_connect(clean_session)
            self._expect()
            self.flush()
        except Exception:
            self.close()
            raise

    def connect(self, clean_session=True, timeout=None):
        """Open the link and wait for the CONNACK; returns the broker's session-present flag."""
        self.open(clean_session, timeout)
        try:
            self._wait_for(_CONNACK, None)
        except Exception:
            self.close()
            raise
        return self.session_present

    def _send_connect(self, clean_session):
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
        self._header(_CONNECT, size)
        self._put(b"\x00\x04MQTT\x04")
        self._byte(flags)
        self._u16(self.keepalive)
        self._str(self.client_id)
        if self.lw:
            self._str(self.lw[0])
            self._str(self.lw[1])
        if self.user is not None:
            self._str(self.user)
        if self.pswd is not None:
            self._str(self.pswd)

    def disconnect(self):
        """Wait (at most `timeout`) for what is still unacknowledged, then say goodbye: closing
        with unread acknowledgements would reset the link and the broker would lose the rest."""
        try:
            self.settle(self.timeout * 1000)
            self._put(b"\xe0\x00")
            self._drain()
        finally:
            self.close()

    def settle(self, timeout_ms):
        """Before a reset or a goodbye: send what is staged and wait (at most `timeout_ms`) for
        every acknowledgement still due, so that the broker holds it all; a reset that closes the
        socket with data unsent or unread loses it. Messages that come meanwhile are acknowledged
        and dropped. Returns True when nothing is left unacknowledged."""
        cb, self.cb = self.cb, None
        try:
            start = time.ticks_ms()
            while self.unacked:
                left = timeout_ms - time.ticks_diff(time.ticks_ms(), start)
                if left <= 0 or self.wait_msg(left) is None:
                    break
            self._drain()  # the acknowledgements of what came meanwhile
        finally:
            self.cb = cb
        return not self.unacked

    def close(self):
        """Drop the socket without a DISCONNECT (the broker then sends the last will)."""
        if self.sock:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self.poller = self.rpoller = None
        self.olen = self.wlen = 0

    def reconnect(self, backoff=None, attempts=0, clean_session=True):
        """Connect again after a failure, waiting `backoff.next_ms()` between tries; gives up
        (re-raising the last error) after `attempts` tries if that is not 0. The backoff is not
        reset here: call `backoff.reset()` once the new connection has proved useful."""
        backoff = backoff or Backoff()
        tries = 0
        while True:
            try:
                return self.connect(clean_session)
            except (OSError, OTAError):
                tries += 1
                if attempts and tries >= attempts:
                    raise
            time.sleep_ms(backoff.next_ms())

    # --- outgoing: staged, then written together ---
    def _next_pid(self):
        self.pid = self.pid % 65535 + 1
        return self.pid

    def _expect(self):
        """One more acknowledgement is due; the ack deadline runs from the oldest one."""
        if not self.unacked:
            self.ack_at = time.ticks_ms()
        self.unacked += 1

    def ping(self):
        self._put(b"\xc0\x00")
        self.flush()
        if self.ping_at is None:
            self.ping_at = time.ticks_ms()

    def queue_publish(self, topic, msg, retain=False, qos=0):
        """Stage a PUBLISH; returns its packet id (0 for QoS 0). Its PUBACK is not waited for."""
        topic = _text(topic)
        msg = _text(msg)
        if qos not in (0, 1):
            raise ValueError("qos")
        self._header(_PUBLISH | qos << 1 | (1 if retain else 0), 2 + len(topic) + len(msg) + (2 if qos else 0))
        self._str(topic)
        pid = 0
        if qos:
            pid = self._next_pid()
            self._u16(pid)
            self._expect()
        self._put(msg)
        return pid

    def queue_subscribe(self, topics, qos=0):
        """Stage one SUBSCRIBE for every topic in `topics`; returns its packet id."""
        return self._queue_topics(_SUBSCRIBE, topics, qos)

    def queue_unsubscribe(self, topics):
        """Stage one UNSUBSCRIBE for every topic in `topics`; returns its packet id."""
        return self._queue_topics(_UNSUBSCRIBE, topics, None)

    def _queue_topics(self, op, topics, qos):
        pid = self._next_pid()
        size = 2
        for t in topics:
            size += 2 + len(t) + (qos is not None)
        self._header(op, size)
        self._u16(pid)
        for t in topics:
            self._str(_text(t))
            if qos is not None:
                self._byte(qos)
        self._expect()
        return pid

    def publish(self, topic, msg, retain=False, qos=0):
        """Send a PUBLISH; at QoS 1 wait (at most `timeout`) for its PUBACK."""
        pid = self.queue_publish(topic, msg, retain, qos)
        self._drain()
        if qos:
            self._wait_for(_PUBACK, pid)

    def subscribe(self, topic, qos=0):
        pid = self.queue_subscribe((_text(topic),), qos)
        self._drain()
        self._wait_for(_SUBACK, pid)
        if not self.granted:
            raise MQTTError("sub_refused", topic)

    def unsubscribe(self, topic):
        pid = self.queue_unsubscribe((_text(topic),))
        self._drain()
        self._wait_for(_UNSUBACK, pid)

    def _wait_for(self, kind, pid):
        start = time.ticks_ms()
        limit = self.timeout * 1000
        while True:
            left = limit - time.ticks_diff(time.ticks_ms(), start)
            if left <= 0:
                raise MQTTError("timeout", "no ack")
            if self.wait_msg(left) == kind and (pid is None or self.acked == pid):
                return

    def _header(self, op, size):
        if size > _MAX_REMAINING:
            raise ValueError("packet too large")
        self._byte(op)
        while True:
            b = size & 0x7F
            size >>= 7
            self._byte(b | (0x80 if size else 0))
            if not size:
                break

    def _room(self, n):
        if self.olen + n > _OUT:
            self._drain()

    def _byte(self, b):
        self._room(1)
        self.obuf[self.olen] = b
        self.olen += 1

    def _u16(self, v):
        self._room(2)
        self.obuf[self.olen] = v >> 8
        self.obuf[self.olen + 1] = v & 0xFF
        self.olen += 2

    def _str(self, s):
        self._u16(len(s))
        self._put(s)

    def _put(self, data):
        n = len(data)
        if n > _OUT:  # a big payload goes out through the staging buffer, a buffer at a time
            mv = memoryview(data)
            for i in range(0, n, _OUT):
                self._put(mv[i:i + _OUT])
            return
        self._room(n)
        self.obuf[self.olen:self.olen + n] = data
        self.olen += n

    def flush(self):
        """Write what is staged, as far as the socket takes it now; the rest goes with the next
        flush (every wait for incoming data flushes first)."""
        sock = self.sock
        if sock is None:
            raise MQTTError("closed", "not connected")
        while self.olen:
            size = self.wlen or self.olen
            try:
                n = sock.write(self.omv[:size])
            except ValueError as e:  # mbedtls: the server's certificate failed verification
                self._fail("tls", str(e).strip())
            if not n:
                self.wlen = size
                return
            # mbedtls wants a write it could not finish repeated with the same length
            self.wlen = size - n if n < size else 0
            self.omv[:self.olen - n] = self.omv[n:self.olen]
            self.olen -= n
            self.last_tx = time.ticks_ms()

    def _drain(self):
        """Write everything staged, waiting at most `timeout` for a socket that takes nothing."""
        start = time.ticks_ms()
        while True:
            self.flush()
            if not self.olen:
                return
            if time.ticks_diff(time.ticks_ms(), start) > self.timeout * 1000:
                self._fail("timeout", "send")
            poller = self.poller
            if poller is not None:
                poller.modify(self.sock, select.POLLOUT)
                poller.poll(100)
                poller.modify(self.sock, select.POLLIN)

    # --- incoming: packets parsed out of one buffer ---
    def check_msg(self):
        """Handle one waiting packet, if any, without blocking; keeps the keepalive going."""
        return self.wait_msg(0)

    def wait_msg(self, timeout_ms=None):
        """Handle one incoming packet, waiting at most `timeout_ms` (None: until one comes).
        Returns the packet type handled (0x30 for a PUBLISH), or None when the time ran out."""
        start = time.ticks_ms()
        while True:
            op = self._parse()
            if op is not None:
                return op
            got = self._fill()
            step = self._deadlines()
            if got:  # more may be waiting; a broker that streams without end meets the budget
                if timeout_ms is None or time.ticks_diff(time.ticks_ms(), start) <= timeout_ms:
                    continue
                return None
            final = False
            if timeout_ms is not None:
                left = max(0, timeout_ms - time.ticks_diff(time.ticks_ms(), start))
                if left <= step:
                    step, final = left, True
            if not self._wait_readable(step) and final:
                return None

    def _deadlines(self):
        """Fail a link that broke a deadline, ping when the keepalive asks; return the ms
        until the next check."""
        now = time.ticks_ms()
        limit = self.timeout * 1000
        if self.rs != self.re or self.skip:
            if self.part_at is None:
                self.part_at = now
            elif time.ticks_diff(now, self.part_at) > limit:
                self._fail("timeout", "packet")
        if self.unacked and time.ticks_diff(now, self.ack_at) > limit:
            self._fail("timeout", "no ack")
        if not self.keepalive:
            return _STEP_MS
        period = self.keepalive * 1000
        if self.ping_at is not None and time.ticks_diff(now, self.ping_at) > period:
            self._fail("timeout", "no PINGRESP")
        idle = time.ticks_diff(now, self.last_tx)
        if idle >= period // 2:
            self.ping()
            idle = 0
        return max(10, min(_STEP_MS, period // 2 - idle))

    def _fail(self, reason, detail):
        self.close()
        raise MQTTError(reason, detail)

    def _wait_readable(self, ms):
        self.flush()
        if self.olen:  # the socket took only part: come back soon to write the rest
            ms = min(ms, 10)
        poller = self.rpoller
        if poller is None:
            raise MQTTError("closed", "not connected")
        for _, ev in poller.poll(ms):
            if ev & (select.POLLHUP | select.POLLERR) and not ev & select.POLLIN:
                self._fail("closed", "hangup")
            return True
        return False

    def _fill(self):
        """Read what the socket has now into the free end of the buffer; False if nothing."""
        sock = self.sock
        if sock is None:
            raise MQTTError("closed", "not connected")
        size = len(self.rbuf)
        if self.rs == self.re:
            self.rs = self.re = 0
        elif self.rs + self.need > size or self.re == size:
            n = self.re - self.rs
            self.rmv[:n] = self.rmv[self.rs:self.re]
            self.rs, self.re = 0, n
        if self.re == size:
            self._fail("protocol", "size")  # cannot happen: larger packets are skipped
        try:
            n = sock.readinto(self.rmv[self.re:])
        except ValueError as e:  # mbedtls: the server's certificate failed verification
            self._fail("tls", str(e).strip())
        if n is None:
            return False
        if not n:
            self._fail("closed", "eof")
        self.re += n
        return True

    def _parse(self):
        """Handle the next complete packet in the buffer and return its type; None (with
        `need` set) when more bytes must come first."""
        b = self.rbuf
        if self.skip:
            n = min(self.skip, self.re - self.rs)
            self.skip -= n
            self.rs += n
            if self.skip:
                self.need = 1
                return None
        s = self.rs
        end = self.re
        if end - s < 2:
            self.need = 2
            return None
        size = 0
        shift = 0
        i = s + 1
        while True:
            if i >= end:
                self.need = i - s + 1
                return None
            c = b[i]
            i += 1
            size |= (c & 0x7F) << shift
            if not c & 0x80:
                break
            shift += 7
            if shift > 21:
                self._fail("protocol", "length")
        op = b[s]
        total = i - s + size
        if op & 0xF0 == _PUBLISH:
            return self._publish(op, s, i, total)
        if size > _CTRL:
            self._fail("protocol", "size")
        if end - s < total:
            self.need = total
            return None
        self.rs = s + total
        self.part_at = None
        return self._control(op, i, size)

    def _control(self, op, i, size):
        b = self.rbuf
        kind = op & 0xF0
        if kind == _PINGRESP:
            self.ping_at = None
            return kind
        if size < 2:
            self._fail("protocol", "size")
        if kind == _CONNACK:
            self._acked()
            if b[i + 1]:
                self._fail("refused", b[i + 1])
            self.session_present = b[i] & 1
            return kind
        if kind not in (_PUBACK, _SUBACK, _UNSUBACK):
            self._fail("protocol", "type %d" % op)
        self.acked = b[i] << 8 | b[i + 1]
        self._acked()
        granted = True
        if kind == _SUBACK:
            for j in range(i + 2, i + size):
                if b[j] & 0x80:
                    granted = False
            self.granted = granted
        if self.on_ack:
            self.on_ack(kind, self.acked, granted)
        return kind

    def _acked(self):
        if self.unacked:
            self.unacked -= 1
        self.ack_at = time.ticks_ms()

    def _publish(self, op, s, i, total):
        b = self.rbuf
        qos = (op >> 1) & 3
        if qos > 1:
            self._fail("protocol", "qos 2")
        avail = self.re - s
        if avail < i - s + 2:
            self.need = i - s + 2
            return None
        tlen = b[i] << 8 | b[i + 1]
        body = i + 2 + tlen + (2 if qos else 0)  # first payload byte
        if body - s > total:
            self._fail("protocol", "publish length")
        whole = total <= len(b)
        lead = total if whole else body - s  # what must be in the buffer before acting
        if lead > len(b):
            self._fail("protocol", "topic too long")
        if avail < lead:
            self.need = lead
            return None
        pid = b[body - 2] << 8 | b[body - 1] if qos else 0
        left = total - (body - s)
        topic = bytes(self.rmv[i + 2:i + 2 + tlen]) if tlen <= self.topic_size else None
        self.part_at = None
        if whole:
            self.rs = s + total
        else:
            self.rs = body
            self.skip = left
        if whole and topic is not None and left <= self.bufsize:
            if self.cb:
                self.cb(topic, self.rmv[body:s + total])
        else:
            self.oversized += 1
            if self.on_oversize:
                self.on_oversize(topic, left)
        if qos:
            self._byte(_PUBACK)
            self._byte(2)
            self._u16(pid)
        return _PUBLISH
