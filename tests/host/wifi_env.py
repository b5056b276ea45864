"""The Wi-Fi world of a simulated board: one access point, and the network behind it.

The AP's state is the control file the board's `network` module reads (boards/unix/modules/
network.py): SSID, password, whether it is on the air, how long association takes. Behind it,
a TCP relay to the broker carries bytes only while the AP is up; while it is down, open
connections are a black hole (nothing flows, nothing is reset), as when an AP vanishes, and the
bytes in flight arrive if it comes back before either end gave up."""
import json
import os
import selectors
import socket
import threading
import time
from pathlib import Path


class AccessPoint:
    def __init__(self, flash, upstream_port, *, ssid="home", password="correct horse", up=True, delay_ms=0):
        self.control = Path(str(flash) + ".net")
        self.air = Path(str(flash) + ".air")
        self.upstream = ("127.0.0.1", upstream_port)
        self.state = {"ssid": ssid, "password": password, "up": up, "delay_ms": delay_ms}
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.accepted = 0  # connections the board opened through this AP
        self.carried = 0  # bytes carried to the board
        self.off_after = None  # go off the air once `carried` reaches this
        self.brokers = set()
        self.peer = {}
        self.closed = False
        self.lock = threading.Lock()
        self._write()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def set(self, **changes):
        """Change the AP: up=False takes it off the air, password=..., delay_ms=..."""
        with self.lock:
            self.state.update(changes)
            self._write()

    def requests(self):
        """How many times the board's station asked to connect (its `network` module logs them)."""
        try:
            return self.air.read_text().count("\n")
        except FileNotFoundError:
            return 0

    def wait_requests(self, count, timeout=60):
        """Wait until the board has asked `count` more times: an outage measured in attempts."""
        target = self.requests() + count
        end = time.monotonic() + timeout
        while self.requests() < target:
            if time.monotonic() > end:
                raise AssertionError("the board asked %d times, not %d" % (self.requests(), target))
            time.sleep(0.05)

    def go_off_after(self, nbytes):
        """Go off the air by itself once `nbytes` more have been carried to the board: a drop at
        a known point of a download, whatever the speed of the machine."""
        with self.lock:
            self.off_after = self.carried + nbytes

    def _write(self):
        tmp = self.control.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state))
        os.replace(tmp, self.control)  # the board never reads half a file

    def _run(self):
        sel = selectors.DefaultSelector()
        sel.register(self.server, selectors.EVENT_READ)
        watched = set()
        while not self.closed:
            with self.lock:
                up = self.state["up"]
            # Down: the relayed sockets are not read, so their bytes wait in the kernel.
            want = set(self.peer) if up else set()
            for s in watched - want:
                sel.unregister(s)
            for s in want - watched:
                sel.register(s, selectors.EVENT_READ)
            watched = want
            for key, _ in sel.select(0.02):
                if key.fileobj is self.server:
                    self._accept(up)
                elif key.fileobj in self.peer:
                    self._relay(key.fileobj, sel, watched)

    def _accept(self, up):
        board, _ = self.server.accept()
        if not up:  # the board's socket layer refuses first; a race with the AP going away lands here
            board.close()
            return
        try:
            broker = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            board.close()
            return
        self.accepted += 1
        self.brokers.add(broker)
        self.peer[board], self.peer[broker] = broker, board

    def _relay(self, src, sel, watched):
        dst = self.peer[src]
        try:
            data = src.recv(65536)
            if data:
                dst.sendall(data)
                if src in self.brokers:
                    self._count(len(data))
                return
        except OSError:
            pass
        for s in (src, dst):
            self.peer.pop(s, None)
            self.brokers.discard(s)
            if s in watched:
                sel.unregister(s)
                watched.discard(s)
            s.close()

    def _count(self, n):
        with self.lock:
            self.carried += n
            if self.off_after is not None and self.carried >= self.off_after:
                self.off_after = None
                self.state["up"] = False
                self._write()

    def close(self):
        self.closed = True
        self.thread.join(2)
        self.server.close()
        for s in list(self.peer):
            s.close()
        self.control.unlink(missing_ok=True)
        self.air.unlink(missing_ok=True)
