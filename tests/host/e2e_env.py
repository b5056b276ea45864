"""A simulated board running the project's own boot.py and main.py against a real broker:
the whole path main.py → ota.service → MQTT → slot → trial boot → confirm."""
import json
import os
import subprocess
import sys
import time

from mpunix import ROOT, install_mpy
from pipeline_env import FW_HEALTHY
from releases import Signer
from mpota import broker as host_broker
from mpota import romfs as romfs_image
from mpota.cmd_publish import fleet_status
from mpota.provision import INSTALLED_PATH, installed_record


APPS = {"main.py": "main.py", "mqtt_app.py": "boards/unix/sim_main.py"}  # app name -> file in the repository


class Fleet:
    """A broker, a signing key, and simulated boards that trust it. `root` is the first topic
    level of every OTA topic (tests sharing one broker keep apart by it)."""

    def __init__(self, tmp_path, broker, sim_device, fleet="demo", root=host_broker.DEFAULT_ROOT):
        self.tmp = tmp_path
        self.broker = broker
        self.sim_device = sim_device
        self.fleet = fleet
        self.root = root
        self.signer = Signer(tmp_path / "keys")
        self.boards = {}

    def board(self, device_id, *, group=None, firmware=FW_HEALTHY, heapsize=os.environ.get("OTA_E2E_HEAP", "240K"), extra=None, ca=None, cert=None,
              app="main.py", port=None, romfs=False):
        """A board with firmware 1.0.0; `app` is the project's main.py or a test app's file name;
        `port`: connect there (a relay) instead of to the broker's own port; `romfs`: the package
        is in the board's ROMFS partition (as `mpota provision --romfs` deploys it), not in /lib."""
        old = self.signer.release("1.0.0", {"fw": firmware})[1]
        if romfs:
            tree = self.tmp / ("romfs-" + device_id)
            install_mpy(tree / "lib")
            device = self.sim_device(old, heapsize=heapsize, romfs=romfs_image.image(tree))
        else:
            device = self.sim_device(old, heapsize=heapsize)
            install_mpy(device.fs / "lib")
        broker_cfg = {"host": self.broker.host, "port": port or self.broker.port, "tls": self.broker.tls,
                      "server_hostname": "localhost", "keepalive": 10}
        files = {"boot.py": (ROOT / "boot.py").read_text(), "main.py": (ROOT / APPS.get(app, "tests/host/apps/" + app)).read_text(),
                 ".ota/trust.bin": self.signer.trust.read_bytes(),
                 INSTALLED_PATH: installed_record("1.0.0")}  # as `mpota provision --firmware-version` writes it
        if self.broker.tls:  # DER, the form MicroPython's tls module loads on every port
            broker_cfg["ca"] = "certs/ca.der"
            files["certs/ca.der"] = ca or self.broker.pki.ca_der
            if cert:
                broker_cfg.update({"cert": "certs/device.der", "key": "certs/device.key.der"})
                files["certs/device.der"] = cert["cert_der"]
                files["certs/device.key.der"] = cert["key_der"]
        cfg = {"device_id": device_id, "fleet": self.fleet, "group": group, "root": self.root, "broker": broker_cfg,
               "wdt_ms": 5000, "confirm_within_ms": 60000}
        cfg.update(extra or {})
        files["ota_config.json"] = json.dumps(cfg)
        device.write_files(files)
        self.boards[device_id] = device
        return device

    def connection(self):
        kw = {"cafile": str(self.broker.pki.ca_file)} if self.broker.tls else {}
        return host_broker.Connection(self.broker.host, self.broker.port, **kw)

    def publish(self, blob, image, *target):
        """Publish with the real CLI, as a maker would: `mpota publish ... --fleet F`."""
        (self.tmp / "release.sig").write_bytes(blob)
        (self.tmp / "release.bin").write_bytes(image)
        cmd = [sys.executable, "-m", "mpota", "publish", str(self.tmp / "release.sig"), str(self.tmp / "release.bin"),
               "--fleet", self.fleet, "--broker", "%s:%d" % (self.broker.host, self.broker.port), "--quiet",
               "--root", self.root]
        cmd += list(target)
        if self.broker.tls:
            cmd += ["--cafile", str(self.broker.pki.ca_file)]
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)

    def states(self):
        """The retained state of every board, read topic by topic: brokers such as RabbitMQ send
        no retained messages to wildcard subscriptions."""
        topics = [host_broker.status_topic(self.root, d, leaf) for d in self.boards for leaf in ("state", "online")]
        if not topics:
            return {}
        with self.connection() as conn:
            msgs = conn.retained(topics, settle=0.3, want=topics)
        return fleet_status(msgs.items(), self.root)

    def wait_state(self, predicate, timeout=120):
        """Poll the retained states until `predicate(states)` holds; returns the states."""
        end = time.monotonic() + timeout
        states = {}
        while time.monotonic() < end:
            states = self.states()
            if predicate(states):
                return states
            time.sleep(0.3)
        consoles = "\n\n".join("%s:\n%s" % (d, b.console[-3000:]) for d, b in self.boards.items())
        raise AssertionError("states never matched: %r\n%s" % (states, consoles))
