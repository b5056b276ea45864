"""`mpota fleet init|add|revoke|list|broker-config`: the fleet's identities and its broker's
access rules (tools/fleet.py, tools/mosquitto_conf.py)."""
import json
import sys

from mpota import broker, fleet, mosquitto_conf
from mpota.audit import AuditLog
from mpota.cli import EXIT_OK, CliError


def cmd_init(args):
    host, _, port = args.broker.rpartition(":")
    if not host or not port.isdigit():
        raise CliError("--broker %r: HOST:PORT, as devices and the tools will reach the broker" % args.broker)
    f = fleet.Fleet.init(args.fleet_dir, args.name, root=args.root, broker_address=args.broker, trust=args.trust)
    print("fleet %s in %s: CA %s, operator certificate %s" % (f.name, f.dir, f.dir / "pki" / "ca.crt",
                                                              f.dir / "pki" / (fleet.OPERATOR + ".crt")))
    return EXIT_OK


def cmd_add(args):
    f = fleet.from_args(args)
    for device in args.device:
        out = f.add(device, args.group)
        AuditLog(f.dir).record(fleet.OPERATOR, "device_add", device=device, outcome=args.group or "no group")
        print("added %s%s: credentials in %s" % (device, " to group " + args.group if args.group else "", out))
    return EXIT_OK


def cmd_revoke(args):
    f = fleet.from_args(args)
    for device in args.device:
        f.revoke(device)
        AuditLog(f.dir).record(fleet.OPERATOR, "device_revoke", device=device, outcome="revoked")
        print("revoked %s: regenerate the broker configuration and reload the broker" % device)
    return EXIT_OK


def cmd_list(args):
    f = fleet.from_args(args)
    devices = f.devices(revoked=True)
    if args.json:
        print(json.dumps({"fleet": f.name, "root": f.root, "devices": devices}, indent=1, sort_keys=True))
        return EXIT_OK
    print("fleet %s (root %s, broker %s): %d devices, %d revoked" % (
        f.name, f.root, f.data["broker"], len(f.devices()), len(devices) - len(f.devices())))
    for device, info in sorted(devices.items()):
        print("  %-24s %-16s %s" % (device, info["group"] or "-", "REVOKED" if info["revoked"] else "active"))
    return EXIT_OK


def cmd_broker_config(args):
    f = fleet.from_args(args)
    host, _, port = f.data["broker"].rpartition(":")
    hosts = args.host or sorted({host, "localhost"})
    conf = mosquitto_conf.write(f, args.out, port=args.port or int(port), bind=args.bind, hosts=hosts,
                                persistence=not args.no_persistence)
    print("wrote %s (ACL %s, CRL %s): reload the broker (SIGHUP) to apply" % (conf, conf.parent / "acl",
                                                                              conf.parent / "crl.pem"))
    account = mosquitto_conf.broker_account()
    blocked = account and mosquitto_conf.unreachable(conf.parent, account)
    if blocked:
        print("note: mosquitto started as root runs as user %s, which cannot enter %s: start it as root with "
              "`user root` added, or put --out where that user can reach" % (mosquitto_conf.BROKER_USER, blocked),
              file=sys.stderr)
    return EXIT_OK


def register(subparsers):
    p = subparsers.add_parser("fleet", help="device identities, groups, revocation, broker configuration",
                              description="Keep a fleet folder: a CA, per-device certificates, groups, "
                              "revocations, and the mosquitto configuration that enforces them.")
    sub = p.add_subparsers(dest="fleet_command", metavar="ACTION", required=True)

    q = sub.add_parser("init", help="create a fleet folder with its CA and the operators' certificate")
    q.add_argument("name", help="the fleet's name (its topic level)")
    q.add_argument("--broker", default="127.0.0.1:8883", metavar="HOST:PORT",
                   help="where devices and the tools reach the broker (default 127.0.0.1:8883)")
    q.add_argument("--root", default=broker.DEFAULT_ROOT, help="first topic level (default: ota)")
    q.add_argument("--trust", help="trust file (public signing keys) to hand to provisioned devices")
    fleet.add_argument(q)
    q.set_defaults(func=cmd_init)

    q = sub.add_parser("add", help="register devices and issue their certificates")
    q.add_argument("device", nargs="+", help="device id (the certificate's CN and MQTT username)")
    q.add_argument("--group", help="the group these devices belong to")
    fleet.add_argument(q)
    q.set_defaults(func=cmd_add)

    q = sub.add_parser("revoke", help="revoke devices: their certificates go on the CRL")
    q.add_argument("device", nargs="+")
    fleet.add_argument(q)
    q.set_defaults(func=cmd_revoke)

    q = sub.add_parser("list", help="devices, groups and revocations")
    q.add_argument("--json", action="store_true")
    fleet.add_argument(q)
    q.set_defaults(func=cmd_list)

    q = sub.add_parser("broker-config", help="write mosquitto.conf, ACL, CRL and server certificate",
                       description="Write a mosquitto configuration for this fleet: a TLS listener that "
                       "requires client certificates, the CRL of revoked devices and the ACL.")
    q.add_argument("--out", required=True, help="folder to write into")
    q.add_argument("--port", type=int, help="port to listen on (default: the port of the fleet's broker address)")
    q.add_argument("--bind", help="address to listen on (default: all)")
    q.add_argument("--host", action="append", help="host name or address in the server certificate (repeatable; default: the "
                   "fleet's broker host and localhost)")
    q.add_argument("--no-persistence", action="store_true", help="do not keep retained messages on disk")
    fleet.add_argument(q)
    q.set_defaults(func=cmd_broker_config)
