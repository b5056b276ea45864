"""`mpota rollout start|status|pause|resume|abort|run`: staged rollouts (tools/rollout.py)."""
import json
import sys
import time

from mpota import fleet, rollout
from mpota.audit import AuditLog
from mpota.cli import EXIT_OK, EXIT_REFUSED, CliError, read_file
from mpota.cmd_publish import delta_fields, release_fields, upload


def _list(values):
    return [v for text in values or () if text for v in text.split(",") if v]


def cmd_start(args):
    f = fleet.from_args(args)
    blob, image = read_file(args.manifest), read_file(args.image)
    fields = release_fields(blob, image)
    if bool(args.delta) != bool(args.delta_from):
        raise CliError("a delta needs both --delta DELTA_MANIFEST and --delta-from OLD.bin")
    delta, base = (read_file(args.delta), read_file(args.delta_from)) if args.delta else (None, None)
    dfields = delta_fields(fields, delta, base) if delta else None
    devices = f.devices()
    targets = [d for d, info in devices.items() if not args.group or info["group"] in args.group]
    canary = _list(args.canary) + [d for g in args.canary_group or () for d in f.groups().get(g, [])]
    rid = args.id or "r%s-%s" % (time.strftime("%Y%m%d-%H%M%S"), fields["id"][:6])
    plan = rollout.new_plan(rid, f, blob, targets, canary=canary, percents=[float(p) for p in _list([args.waves])],
                            soak_s=args.soak, timeout_s=args.timeout, threshold_count=args.abort_count,
                            threshold_percentage=args.abort_percent, min_executed=args.min_executed,
                            failure_types=_list([args.failure_types]) or rollout.FAILURES,
                            delta=dfields["id"] if dfields else None)
    store = rollout.Store(f)
    audit = AuditLog(f.dir)
    with f.connection(args.broker) as conn:  # chunks and release manifests only: the waves target
        upload(conn, blob, image, [], f.root, args.quiet, delta=delta, base=base)
    audit.record(fleet.OPERATOR, "publish", release=fields["id"], rollout=rid, outcome="uploaded",
                 reason=None)
    store.create(plan, blob, delta)
    audit.record(fleet.OPERATOR, "rollout_start", release=fields["id"], rollout=rid, outcome="running")
    print("rollout %s: release %s (version %s) to %d devices in %d waves; run `mpota rollout run %s`" % (
        rid, fields["id"], fields["version"], len(targets), len(plan["waves"]), rid))
    if dfields:
        print("  delta %s: %d bytes on the wire (%.1f %% of the %d-byte image) for devices running %s" % (
            dfields["id"], dfields["wire_size"], 100.0 * dfields["wire_size"] / fields["size"], fields["size"],
            args.delta_from))
    return EXIT_OK


def _store(args):
    return rollout.Store(fleet.from_args(args))


def cmd_status(args):
    store = _store(args)
    ids = [args.rollout] if args.rollout else store.ids()
    for rid in ids:
        plan = store.load(rid)
        print(json.dumps(plan, indent=1, sort_keys=True) if args.json else "\n".join(rollout.summary(plan)))
    return EXIT_OK


def cmd_control(args):
    store = _store(args)
    plan = rollout.control(store, args.rollout, args.action)
    if args.action == "abort":  # clear the pins now, whether or not a runner is going
        with store.fleet.connection(args.broker) as conn:
            plan = rollout.Runner(store.fleet, args.rollout, conn).cycle(control_only=True)
    print("\n".join(rollout.summary(plan)))
    return EXIT_OK


def cmd_run(args):
    f = fleet.from_args(args)
    until = time.monotonic() + args.max_time if args.max_time else None
    seen = []
    from tqdm import tqdm

    bar = tqdm(total=0, unit="device", desc="confirmed", file=sys.stderr, disable=args.quiet)

    def show(plan):
        """A line per change of status or wave; the bar counts devices that finished."""
        counts = rollout.Engine(plan).counts()
        bar.total = len(plan["targets"])
        bar.n = sum(counts.get(s, 0) for s in ("succeeded",) + rollout.FAILURES)
        bar.set_postfix_str(", ".join("%s %d" % kv for kv in sorted(counts.items())), refresh=True)
        line = "%s wave %d/%d" % (plan["status"], plan["wave"] + 1, len(plan["waves"]))
        if not seen or seen[-1] != line:
            seen.append(line)
            tqdm.write("%s %s" % (time.strftime("%H:%M:%S"), line), file=sys.stdout)

    try:
        with f.connection(args.broker, identity=fleet.RUNNER) as conn:  # its own session, beside the operators'
            plan = rollout.Runner(f, args.rollout, conn).run(until, show)
    finally:
        bar.close()
    print("\n".join(rollout.summary(plan)))
    return EXIT_OK if plan["status"] in ("succeeded", "running", "paused") else EXIT_REFUSED


def register(subparsers):
    p = subparsers.add_parser("rollout", help="staged rollouts that halt by themselves",
                              description="Release to a canary set, then to growing percentages of the "
                              "fleet; each wave waits for the previous to confirm and soak; failures past "
                              "a threshold halt the rollout and leave the rest on the old release.")
    sub = p.add_subparsers(dest="rollout_command", metavar="ACTION", required=True)

    q = sub.add_parser("start", help="upload a release and plan its waves (then `run`)")
    q.add_argument("manifest", help="the signed manifest blob")
    q.add_argument("image", help="the image it signs")
    q.add_argument("--id", help="rollout id (default: r<date>-<time>-<release>)")
    q.add_argument("--delta", metavar="DELTA_MANIFEST",
                   help="a signed delta of the same release (`mpota manifest --delta-from`), carried in every "
                   "pin after the full manifest: devices running its base take it, the others the full image")
    q.add_argument("--delta-from", metavar="OLD.bin", help="the base image the delta was made from")
    q.add_argument("--group", action="append", help="only devices of these groups (repeatable)")
    q.add_argument("--canary", action="append", help="canary devices, comma separated: the first wave")
    q.add_argument("--canary-group", action="append", help="a group whose devices are canaries")
    q.add_argument("--waves", default="100", help="cumulative percentages of the other devices, e.g. 10,50,100")
    q.add_argument("--soak", type=float, default=3600.0, help="seconds to wait after a wave settles (default 3600)")
    q.add_argument("--timeout", type=float, default=3600.0,
                   help="seconds a device may take once it can act before it counts as timed_out")
    q.add_argument("--abort-count", type=int, help="halt once this many devices failed")
    q.add_argument("--abort-percent", type=float, default=20.0,
                   help="halt once this share of executed devices failed (default 20)")
    q.add_argument("--min-executed", type=int, default=1, help="devices that must have finished before "
                   "--abort-percent applies (default 1)")
    q.add_argument("--failure-types", help="what counts as failed: rolled_back,rejected,timed_out (default all)")
    q.add_argument("--broker", metavar="HOST:PORT", help="override the fleet's broker address")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    fleet.add_argument(q)
    q.set_defaults(func=cmd_start)

    q = sub.add_parser("run", help="carry out a rollout until it succeeds or halts (safe to restart)")
    q.add_argument("rollout")
    q.add_argument("--max-time", type=float, help="stop after this many seconds (the rollout goes on at the next run)")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.add_argument("--broker", metavar="HOST:PORT", help="override the fleet's broker address")
    fleet.add_argument(q)
    q.set_defaults(func=cmd_run)

    q = sub.add_parser("status", help="waves and device outcomes of one or every rollout")
    q.add_argument("rollout", nargs="?")
    q.add_argument("--json", action="store_true")
    fleet.add_argument(q)
    q.set_defaults(func=cmd_status)

    for action, text in (("pause", "start no new wave (devices under way go on)"),
                         ("resume", "carry on after a pause"),
                         ("abort", "stop for good: unfinished devices lose their pins")):
        q = sub.add_parser(action, help=text)
        q.add_argument("rollout")
        q.add_argument("--broker", metavar="HOST:PORT", help="override the fleet's broker address")
        fleet.add_argument(q)
        q.set_defaults(func=cmd_control, action=action)
