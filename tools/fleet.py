"""The fleet folder: who may talk to the broker and as what.

    <folder>/fleet.json     fleet name, topic root, broker address, devices (group, certificate
                            serial, revoked or not)
    <folder>/pki/           the fleet CA (kept: every device certificate hangs off it) and the
                            issued certificates; CN = device id = MQTT username
    <folder>/trust.bin      the release signing keys devices trust (copied at init, optional)
    <folder>/devices/<id>/  what provisioning puts on a board: DER credentials, CA, trust, config
    <folder>/rollouts/      rollout state files (tools/rollout.py)
    <folder>/audit.jsonl    the audit trail (tools/audit.py)

`publisher` is the operators' identity (publish, rollouts, status) and `rollout` the rollout
runner's: both may write every OTA topic.
Revoking a device puts its certificate on the CRL the broker configuration loads."""
import json
import os
import re
import shutil
from pathlib import Path

from mpota import broker
from mpota.cli import CliError
from mpota.pki import PKI, private_dir, write_private

OPERATOR = "publisher"
# `mpota rollout run` connects as its own identity: the broker binds every client id to its
# certificate's CN (tools/mosquitto_conf.py), so a runner and an operator's other commands sharing
# one certificate would take each other's connection over.
RUNNER = "rollout"
OPERATORS = (OPERATOR, RUNNER)
RESERVED = OPERATORS + ("broker", "ca")  # names of the operators' and the broker's certificates
ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
FLEET_FILE = "fleet.json"


def check_id(value, what):
    """Ids become topic levels, certificate CNs, ACL entries and file names: keep them plain."""
    if not ID_RE.match(value or ""):
        raise CliError("%s %r: 1 to 64 letters, digits, '.', '_' or '-', not starting with a symbol" % (what, value))
    return value


def atomic_write(path, data):
    """Write beside the file, flush to disk, rename over it: a reader (or a restart after a
    kill) sees the old content or the new, never half of either."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Fleet:
    """One fleet folder. `Fleet.init(...)` creates it; `Fleet(folder)` opens it."""

    def __init__(self, folder):
        self.dir = Path(folder)
        try:
            self.data = json.loads((self.dir / FLEET_FILE).read_text())
        except FileNotFoundError:
            raise CliError("%s is not a fleet folder: run `mpota fleet init` first" % self.dir) from None
        self.pki = PKI.open(self.dir / "pki")

    @classmethod
    def init(cls, folder, name, *, root=broker.DEFAULT_ROOT, broker_address="127.0.0.1:8883", trust=None):
        folder = Path(folder)
        if (folder / FLEET_FILE).exists():
            raise CliError("%s already holds a fleet" % folder)
        private_dir(folder)  # it holds the fleet CA's key
        data = {"name": check_id(name, "fleet"), "root": broker._name(root, "root"), "broker": broker_address,
                "devices": {}}
        pki = PKI.open(folder / "pki")
        for identity in OPERATORS:
            pki.issue(identity)
        if trust:
            shutil.copyfile(trust, folder / "trust.bin")
        atomic_write(folder / FLEET_FILE, json.dumps(data, indent=1, sort_keys=True))
        return cls(folder)

    # --- properties ---
    @property
    def name(self):
        return self.data["name"]

    @property
    def root(self):
        return self.data["root"]

    def devices(self, revoked=False):
        """{device id: {"group", "serial", "revoked"}} of the active devices (all with `revoked`)."""
        return {d: v for d, v in self.data["devices"].items() if revoked or not v["revoked"]}

    def groups(self):
        """{group: [device ids]} of the active devices."""
        out = {}
        for device, info in sorted(self.devices().items()):
            if info["group"]:
                out.setdefault(info["group"], []).append(device)
        return out

    def manifest_topics(self):
        """The manifest topics this fleet's targets use: the fleet's, each group's and each
        device's (revoked devices too: a pin may outlive its device)."""
        devices = self.data["devices"]
        groups = sorted({v["group"] for v in devices.values() if v["group"]})
        return ([broker.target_topic(self.root, self.name)]
                + [broker.target_topic(self.root, self.name, group=g) for g in groups]
                + [broker.target_topic(self.root, self.name, device=d) for d in sorted(devices)])

    def status_topics(self, devices=None):
        """The retained status topics (state, online) of `devices` (default: every device)."""
        devices = self.data["devices"] if devices is None else devices
        return [broker.status_topic(self.root, d, leaf) for d in sorted(devices) for leaf in ("state", "online")]

    def revoked_serials(self):
        return [v["serial"] for v in self.data["devices"].values() if v["revoked"]] + self.data.get("old_serials", [])

    # --- changes ---
    def save(self):
        atomic_write(self.dir / FLEET_FILE, json.dumps(self.data, indent=1, sort_keys=True))

    def add(self, device, group=None):
        """Register a device and issue its credentials; returns the folder to provision from.
        A revoked id may be added again: it gets a new certificate, the old one stays revoked."""
        check_id(device, "device")
        if device in RESERVED:
            raise CliError("%r is reserved for the operators and the broker, not a device id" % device)
        if group is not None:
            check_id(group, "group")
        known = self.data["devices"].get(device)
        if known and not known["revoked"]:
            raise CliError("device %s is already in the fleet (revoke it first to issue new credentials)" % device)
        if known:
            self.data.setdefault("old_serials", []).append(known["serial"])
        leaf = self.pki.issue(device)
        staged = self._stage(device, group, leaf)  # first: a run cut short leaves no device without its key
        self.data["devices"][device] = {"group": group, "serial": leaf["serial"], "revoked": False}
        self.save()
        return staged

    def _stage(self, device, group, leaf):
        out = private_dir(self.dir / "devices" / device)
        private_dir(out / "certs")
        (out / "certs" / "ca.der").write_bytes(self.pki.ca_der)
        (out / "certs" / "device.der").write_bytes(leaf["cert_der"])
        write_private(out / "certs" / "device.key.der", leaf["key_der"])
        if (self.dir / "trust.bin").exists():
            (out / ".ota").mkdir(exist_ok=True)
            shutil.copyfile(self.dir / "trust.bin", out / ".ota" / "trust.bin")
        host, _, port = self.data["broker"].rpartition(":")
        config = {"device_id": device, "fleet": self.name, "group": group, "root": self.root,
                  "broker": {"host": host, "port": int(port), "tls": True, "ca": "certs/ca.der",
                             "cert": "certs/device.der", "key": "certs/device.key.der", "keepalive": 30}}
        (out / "ota_config.json").write_text(json.dumps(config, indent=1))
        return out

    def revoke(self, device):
        """Mark the device revoked and delete every copy of its private key (staged and issued);
        the broker refuses it once it has loaded the regenerated configuration (`mpota fleet
        broker-config`, then a reload)."""
        info = self.data["devices"].get(device)
        if not info:
            raise CliError("no device %s in fleet %s" % (device, self.name))
        info["revoked"] = True
        self.save()
        shutil.rmtree(self.dir / "devices" / device, ignore_errors=True)
        self.pki.forget(device)

    def crl(self):
        return self.pki.crl(self.revoked_serials())

    # --- the operators' connection ---
    def connection(self, address=None, client_id=None, identity=OPERATOR):
        """A `mpota.broker.Connection` as `identity` (one of OPERATORS) over TLS to `address`
        (default: the fleet's broker). The broker names the session after the identity."""
        host, _, port = (address or self.data["broker"]).rpartition(":")
        if not host or not port.isdigit():
            raise CliError("broker address %r: HOST:PORT" % (address or self.data["broker"]))
        pki = self.dir / "pki"
        if not (pki / (identity + ".key")).exists():  # a fleet made before this identity existed
            self.pki.issue(identity)
        return broker.Connection(host, int(port), cafile=str(pki / "ca.crt"), certfile=str(pki / (identity + ".crt")),
                                 keyfile=str(pki / (identity + ".key")), client_id=client_id)


def add_argument(parser):
    parser.add_argument("--fleet-dir", default=os.environ.get("MPOTA_FLEET", "fleet"),
                        help="the fleet folder (default: $MPOTA_FLEET or ./fleet)")


def from_args(args):
    return Fleet(args.fleet_dir)


def add_topics_argument(parser):
    parser.add_argument("--fleet-dir", default=os.environ.get("MPOTA_FLEET"), metavar="FLEET_DIR",
                        help="the fleet folder whose devices and targets to read topic by topic, on a broker that "
                        "sends no retained message to wildcard subscriptions, such as RabbitMQ (default: $MPOTA_FLEET)")


def topics_from_args(args, topics):
    """A function giving `topics(fleet)` for the fleet folder of --fleet-dir (None without one),
    for `broker.Connection.retained_under`: the folder is read only on a broker that needs its
    list, and its topic root must then be the command's (--root)."""
    if not args.fleet_dir:
        return None

    def listed():
        f = Fleet(args.fleet_dir)
        if f.root != args.root:
            raise CliError("the fleet folder's topic root is %r, not --root %r" % (f.root, args.root))
        return topics(f)

    return listed
