"""`make demo`: the whole system on one machine, in about a minute.

A mosquitto broker with TLS on a free loopback port, a fresh signing key, simulated ESP32 boards
provisioned as real ones are (`mpota.provision`), and two releases: a good one that every board
installs and confirms, then a bad one whose health check fails, which every board tries and
rolls back by itself. A live table shows each board's version, slot, state, progress and reason;
a summary ends it. Every process it started is stopped, whatever happens.
"""
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mpota import broker as host_broker
from mpota import fwimage, provision, signing
from mpota.cmd_publish import fleet_status, format_table, publish_release
from mpota.localbroker import LocalBroker

ROOT = Path(__file__).resolve().parents[1]
FLEET = "demo"
BOARD = "esp32-generic"
IMAGE_SIZE = 256 * 1024
HEAPSIZE = "240K"  # the 64-bit unix port plus the simulator's own modules (docs/SIMULATOR.md)
STATUS_FILTERS = ["ota/status/+/state", "ota/status/+/online", "ota/status/+/event"]


class Demo:
    def __init__(self, workdir, devices, out=print, heapsize=HEAPSIZE):
        self.dir = Path(workdir)
        self.count = devices
        self.heapsize = heapsize
        self.out = out
        self.broker = None
        self.boards = []  # (device id, Popen)
        self.states = {}
        self.steps = {}  # device -> the event kinds it reported in this part of the story
        self.shown = None
        self.last_shown = 0.0

    # --- set-up ---
    def start_broker(self):
        self.broker = LocalBroker(self.dir / "broker", tls=True).start()
        self.say("broker: mosquitto with TLS on %s:%d" % (self.broker.host, self.broker.port))

    def make_key(self):
        self.key = signing.generate_key()
        self.trust = signing.trust_file_bytes([self.key.public_key()])
        self.say("signing key: %s (P-256); devices trust it" % signing.public_key_id(self.key.public_key()).hex())

    def release(self, version, firmware, counter):
        image = fwimage.build_image(version, {"fw": firmware}, size=IMAGE_SIZE)
        tbs = signing.build_manifest(image, board=BOARD, version=version, counter=counter, chunk_size=4096,
                                     key_id=self.key.public_key())
        return signing.sign(tbs, self.key), image

    def start_boards(self):
        factory = fwimage.build_image("1.0.0", {"fw": fwimage.FW_HEALTHY})
        credentials = provision.read_credentials(self.broker.pki.ca_file)
        for n in range(1, self.count + 1):
            device_id = "esp32-%02d" % n
            home = self.dir / device_id
            config = provision.device_config(device_id, "%s:%d" % (self.broker.host, self.broker.port), board=BOARD,
                                             fleet=FLEET, server_hostname="localhost")
            config["wdt_ms"], config["confirm_within_ms"] = 5000, 60000
            provision.stage(home / "fs", config=config, trust=self.trust, credentials=credentials, arch="bytecode",
                            main=ROOT / "boards" / "unix" / "sim_main.py", firmware_version="1.0.0")
            self._sim("new", home, "--firmware", self._write(home / "factory.bin", factory))
            proc = subprocess.Popen(self._sim_cmd("run", home, "--heapsize", self.heapsize), cwd=ROOT,
                                    stdout=open(home / "console.log", "wb"), stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            self.boards.append((device_id, proc))
        self.say("boards: %d simulated ESP32s with firmware 1.0.0 in ota_0" % self.count)

    @staticmethod
    def _write(path, data):
        path.write_bytes(data)
        return str(path)

    @staticmethod
    def _sim_cmd(action, home, *extra):
        return [sys.executable, "-m", "mpota", "sim", action, "--flash", str(home / "flash.bin"), "--fs",
                str(home / "fs")] + list(extra)

    def _sim(self, action, home, *extra):
        subprocess.run(self._sim_cmd(action, home, *extra), cwd=ROOT, check=True, capture_output=True)

    # --- watching ---
    def say(self, line):
        self.out(line)

    def watch(self, conn, done, what, timeout):
        """Fold status messages into the table until `done(states)` holds; show it as it changes."""
        self.say("\n== %s" % what)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.read(conn, 0.2)
            self.show()
            if done(self.states):
                self.show(force=True)
                settle = time.monotonic() + 1.0  # the last events trail the retained state
                while time.monotonic() < settle:
                    self.read(conn, 0.1)
                self.show_steps()
                return True
            dead = [d for d, p in self.boards if p.poll() is not None]
            if dead:
                self.say("board(s) stopped: %s" % ", ".join(dead))
                return False
        self.show(force=True)
        self.say("timed out after %ds" % timeout)
        return False

    def read(self, conn, timeout):
        """Fold one status message, if one comes within `timeout`, into the table and the steps."""
        try:
            msg = conn.messages.get(timeout=timeout)
        except queue.Empty:
            return
        device, leaf = msg.topic.split("/")[2:4]
        if leaf == "event":
            try:
                self.step(device, json.loads(msg.payload).get("kind"))
            except (ValueError, AttributeError):
                pass
            return
        was = self.states.get(device, {}).get("online")
        fleet_status([(msg.topic, msg.payload)], devices=self.states)
        now = self.states[device].get("online")
        if leaf == "online" and was is not None and now != was:  # the broker's will: the link dropped
            self.step(device, "online" if now else "offline")

    def step(self, device, kind):
        """Note one step a board took: its events, and its link going and coming back (a reset)."""
        steps = self.steps.setdefault(device, [])
        if kind and (not steps or steps[-1] != kind):
            steps.append(kind)
            self.say("  %s %-9s %s" % (time.strftime("%H:%M:%S"), device, kind))

    def show_steps(self):
        self.say("steps of each board (offline > online: its link dropped and came back, here its reset):")
        for device in sorted(self.steps):
            self.say("  %-9s %s" % (device, " > ".join(self.steps[device])))
        self.steps = {}

    def show(self, force=False):
        table = format_table(self.states)
        now = time.monotonic()
        if table != self.shown and (force or now - self.last_shown >= 1.0):
            self.say(table)
            self.shown, self.last_shown = table, now

    def all(self, predicate):
        return lambda states: len(states) == self.count and all(predicate(row) for row in states.values())

    # --- the story ---
    def run(self):
        self.start_broker()
        self.make_key()
        good = self.release("1.1.0", fwimage.FW_HEALTHY, counter=2)
        bad = self.release("1.2.0", fwimage.FW_UNHEALTHY, counter=3)
        self.start_boards()
        with host_broker.Connection(self.broker.host, self.broker.port, cafile=str(self.broker.pki.ca_file)) as conn:
            conn.client.subscribe([(f, 1) for f in STATUS_FILTERS])
            steps = [
                (None, lambda r: r.get("online") and r.get("version") == "1.0.0", "boards online on 1.0.0", 60),
                (good, lambda r: r.get("version") == "1.1.0" and r.get("state") == "idle",
                 "good release 1.1.0: download, verify, reboot, trial, confirm", 120),
                (bad, lambda r: r.get("version") == "1.1.0" and r.get("reason") == "health_check_failed",
                 "bad release 1.2.0: its health check fails, every board rolls back by itself", 120),
            ]
            for release, predicate, what, timeout in steps:
                if release:
                    publish_release(conn, release[0], release[1], [host_broker.target_topic("ota", FLEET)])
                    self.say("published %s (%d bytes) to fleet %r" % (signing.manifest_id(release[0]),
                                                                        len(release[1]), FLEET))
                if not self.watch(conn, self.all(predicate), what, timeout):
                    return False
        return True

    def summary(self, ok):
        on_good = sum(1 for r in self.states.values() if r.get("version") == "1.1.0")
        rolled = sum(1 for r in self.states.values() if r.get("reason") == "health_check_failed")
        self.say("\n== summary")
        self.say("good release 1.1.0 confirmed on %d/%d boards" % (on_good, self.count))
        self.say("bad release 1.2.0 rolled back on %d/%d boards (reason health_check_failed)" % (rolled, self.count))
        self.say("DEMO %s" % ("PASSED" if ok else "FAILED"))

    def stop(self):
        for _, proc in self.boards:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if self.broker:
            self.broker.stop()


def main(devices=5, keep=False):
    workdir = tempfile.mkdtemp(prefix="mpota-demo-")
    demo = Demo(workdir, devices, out=lambda line: print(line, flush=True))
    ok = False
    try:
        ok = demo.run()
    except KeyboardInterrupt:
        demo.say("interrupted")
    finally:
        demo.stop()
        demo.summary(ok)
        if keep:
            demo.say("files kept in %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1
