"""`mpota audit`: read the fleet's audit trail (tools/audit.py), filtered."""
import json

from mpota import fleet
from mpota.audit import AuditLog, format_entries, parse_time
from mpota.cli import EXIT_OK, CliError


def _time(text):
    try:
        return parse_time(text) if text else None
    except ValueError:
        raise CliError("time %r: ISO 8601, e.g. 2026-05-01 or 2026-05-01T12:00:00Z" % text) from None


def cmd_audit(args):
    f = fleet.from_args(args)
    entries = AuditLog(f.dir).entries(device=args.device, release=args.release, rollout=args.rollout,
                                      actor=args.actor, action=args.action, since=_time(args.since),
                                      until=_time(args.until))
    if args.json:
        for e in entries:
            print(json.dumps(e))
    elif entries:
        print(format_entries(entries))
    return EXIT_OK


def register(subparsers):
    p = subparsers.add_parser("audit", help="who published, decided or reported what, and when",
                              description="Print the fleet's append-only audit trail, oldest first.")
    p.add_argument("--device", help="records about or by this device")
    p.add_argument("--release", help="records of this release (a prefix of its id is enough)")
    p.add_argument("--rollout", help="records of this rollout")
    p.add_argument("--actor", help="publisher, rollout, or a device id")
    p.add_argument("--action", help="e.g. publish, wave_start, pin, report, halt")
    p.add_argument("--since", help="from this time (ISO 8601, UTC unless a zone is given)")
    p.add_argument("--until", help="up to this time")
    p.add_argument("--json", action="store_true", help="JSON lines, as stored")
    fleet.add_argument(p)
    p.set_defaults(func=cmd_audit)
