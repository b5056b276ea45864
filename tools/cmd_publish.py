"""`mpota publish`, `mpota prune`, `mpota status`: releases on the broker and the fleet's state
(docs/PROTOCOL.md). Nothing keeps running after a publish: the broker stores the release."""
import hashlib
import json
import os
import sys

from mpota import broker, fleet, signing, timestamp
from mpota.audit import AuditLog
from mpota.livetable import LiveTable
from mpota.fleet import OPERATOR
from mpota.cli import EXIT_OK, EXIT_REFUSED, CliError, read_file


# --- publish ----------------------------------------------------------------------------------

def release_fields(blob, image):
    """The manifest's fields, after checking that `image` is exactly what it signs."""
    try:
        _, _, fields = signing.parse_blob(blob)
    except signing.FormatError as exc:
        raise CliError("not a signed manifest: %s" % exc) from None
    if len(image) != fields["size"] or hashlib.sha256(image).digest() != fields["digest"]:
        raise CliError("the image does not match the manifest (size or SHA-256 differ): wrong file?")
    return fields


def delta_fields(full, delta, base):
    """The delta manifest's fields, after checking that it delivers release `full` from `base`."""
    try:
        _, _, fields = signing.parse_blob(delta)
    except signing.FormatError as exc:
        raise CliError("not a signed delta manifest: %s" % exc) from None
    if fields["encoding"] != "delta" or any(fields[k] != full[k] for k in ("target", "version", "counter", "size",
                                                                           "digest", "board")):
        raise CliError("the delta manifest is not a delta of this release (encoding, version, counter or image differ)")
    if base is None or len(base) != fields["base_size"] or hashlib.sha256(base).digest() != fields["base_digest"]:
        raise CliError("the base image is not the one the delta manifest names: wrong --delta-from file?")
    return fields


def publish_release(conn, blob, image, targets, root=broker.DEFAULT_ROOT, progress=None, stamp=None, delta=None,
                    base=None):
    """Upload chunks and the digest table, then the release manifest, then point `targets`
    (manifest topics) at it. Each stage is acknowledged before the next: a device never sees a
    manifest without chunks. `stamp`: a `mpota.timestamp.Stamper`, which appends a fresh
    timestamp record to each target's message. `delta`: a delta manifest of the same release
    made against `base`, uploaded too and appended to each target's message (devices running
    `base` take it, docs/PROTOCOL.md). Returns the release id."""
    fields = release_fields(blob, image)
    rid = fields["id"]
    uploads = [(rid, blob, signing.chunk_messages(fields, image))]
    if delta:
        dfields = delta_fields(fields, delta, base)
        uploads.append((dfields["id"], delta, signing.chunk_messages(dfields, image, base)))
    for mid, manifest_blob, chunks in uploads:
        conn.wait([conn.publish(broker.chunk_topic(root, mid, i), msg) for i, msg in enumerate(chunks)], progress)
        conn.wait([conn.publish(broker.release_manifest_topic(root, mid), manifest_blob)])
    messages = {t: blob + (stamp.record(t, blob) if stamp else b"") + (delta or b"") for t in targets}
    conn.wait([conn.publish(t, m) for t, m in messages.items()])
    for mid, manifest_blob, _ in uploads:
        messages[broker.release_manifest_topic(root, mid)] = manifest_blob
    check = list(messages)
    stored = conn.retained(check, want=check)
    missing = [t for t in check if stored.get(t) != messages[t]]
    if missing:
        raise CliError("the broker did not keep %s: does the ACL let this user write there?" % ", ".join(missing))
    return rid


def _targets(args):
    if args.no_target:
        return []
    if not args.fleet:
        raise CliError("say who gets the release: --fleet NAME [--group G | --device D], or --no-target")
    return [broker.target_topic(args.root, args.fleet, args.group, args.device)]


def _audit(args, action, **entry):
    """Append to the fleet's audit log, when there is a fleet folder (--audit-dir, $MPOTA_FLEET)."""
    folder = args.audit_dir or os.environ.get("MPOTA_FLEET")
    if folder:
        AuditLog(folder).record(OPERATOR, action, **entry)


def upload(conn, blob, image, targets, root=broker.DEFAULT_ROOT, quiet=False, stamp=None, delta=None, base=None):
    """`publish_release` with a progress bar on stderr (none when `quiet`)."""
    fields = release_fields(blob, image)
    dfields = delta_fields(fields, delta, base) if delta else None
    if quiet:
        return publish_release(conn, blob, image, targets, root, stamp=stamp, delta=delta, base=base)
    from tqdm import tqdm

    total = signing.message_count(fields) + (signing.message_count(dfields) if dfields else 0)
    with tqdm(total=total, unit="chunk", desc="upload %s" % fields["id"], file=sys.stderr) as bar:
        return publish_release(conn, blob, image, targets, root, bar.update, stamp, delta, base)


def cmd_publish(args):
    blob, image = read_file(args.manifest), read_file(args.image)
    if bool(args.delta) != bool(args.delta_from):
        raise CliError("a delta needs both --delta DELTA_MANIFEST and --delta-from OLD.bin")
    delta, base = (read_file(args.delta), read_file(args.delta_from)) if args.delta else (None, None)
    targets = _targets(args)
    fields = release_fields(blob, image)
    dfields = delta_fields(fields, delta, base) if delta else None
    with broker.from_args(args) as conn:
        rid = upload(conn, blob, image, targets, args.root, args.quiet, timestamp.from_args(args), delta, base)
    print("published release %s (version %s, %d chunks of %d bytes)%s" % (
        rid, fields["version"], fields["chunk_count"], fields["chunk_size"],
        "" if not targets else " to " + ", ".join(targets)))
    print("  full (%s): %d bytes on the wire for a %d-byte image" % (fields["encoding"], fields["wire_size"], fields["size"]))
    if dfields:
        print("  delta %s from %s: %d bytes on the wire (%.1f %% of the image), for devices running that base" % (
            dfields["id"], args.delta_from, dfields["wire_size"], 100.0 * dfields["wire_size"] / fields["size"]))
    _audit(args, "publish", release=rid, outcome=", ".join(targets) or "uploaded")
    return EXIT_OK


# --- prune ------------------------------------------------------------------------------------

class StillTargeted(Exception):
    def __init__(self, topics):
        super().__init__(", ".join(topics))
        self.topics = topics


def prune_release(conn, release, root=broker.DEFAULT_ROOT, untarget=False, manifest_topics=None):
    """Delete a release's retained messages. Refuses (StillTargeted) while a manifest topic
    names it, unless `untarget`, which clears those topics first. Returns the topics cleared.
    `manifest_topics`: a function giving a fleet's own (`fleet.topics_from_args`), read one by one
    on a broker that sends no retained message to wildcard subscriptions; without it such a broker
    is refused (CliError) before anything is cleared."""
    targets = conn.retained_under(root, ["%s/manifest/#" % root], manifest_topics,
                                  "the manifest topics that may still offer release %s" % release)
    pointing = sorted(t for t, message in targets.items() if message and release in signing.message_ids(message))
    if pointing and not untarget:
        raise StillTargeted(pointing)
    mtopic = broker.release_manifest_topic(root, release)
    blob = conn.retained([mtopic], want=[mtopic]).get(mtopic)
    if blob:
        count = signing.message_count(signing.parse_blob(blob)[2])
        chunks = [broker.chunk_topic(root, release, i) for i in range(count)]
    else:  # no manifest left: find the chunks themselves
        chunks = _orphan_chunks(conn, root, release)
    cleared = pointing + chunks + ([mtopic] if blob else [])
    conn.wait([conn.publish(t, b"") for t in cleared])
    return cleared


def _orphan_chunks(conn, root, release, batch=256):
    """The chunk topics of a release whose manifest is gone. Through a wildcard where the broker
    sends retained messages that way; else by number, a batch at a time, up to the first batch
    with none left."""
    if conn.wildcard_retained(root):
        return sorted(conn.retained(["%s/fw/%s/+" % (root, release)]))
    found, start = [], 0
    while True:
        topics = [broker.chunk_topic(root, release, i) for i in range(start, start + batch)]
        held = conn.retained(topics, want=topics)
        if not held:
            return found
        found += [t for t in topics if t in held]
        start += batch


def cmd_prune(args):
    if not args.release and not args.fleet:
        raise CliError("name releases to prune, or a target to clear with --fleet [--group|--device]")
    manifest_topics = fleet.topics_from_args(args, fleet.Fleet.manifest_topics)
    with broker.from_args(args) as conn:
        if args.fleet:
            topic = broker.target_topic(args.root, args.fleet, args.group, args.device)
            conn.wait([conn.publish(topic, b"")])
            print("cleared %s" % topic)
            _audit(args, "untarget", outcome=topic)
        for release in args.release:
            try:
                cleared = prune_release(conn, release, args.root, args.untarget, manifest_topics)
            except StillTargeted as exc:
                print("release %s is still offered on %s: clear those first or add --untarget" % (release, exc),
                      file=sys.stderr)
                return EXIT_REFUSED
            print("pruned release %s (%d retained messages cleared)" % (release, len(cleared)))
            _audit(args, "prune", release=release, outcome="%d retained messages cleared" % len(cleared))
    return EXIT_OK


# --- status -----------------------------------------------------------------------------------

COLUMNS = ("device", "online", "state", "version", "slot", "progress", "release", "target", "encoding", "reason")


def fleet_status(messages, root=broker.DEFAULT_ROOT, devices=None):
    """Fold retained (topic, payload) status messages into {device: row dict}."""
    devices = {} if devices is None else devices
    prefix = root + "/status/"
    for topic, payload in messages:
        if not topic.startswith(prefix) or topic.count("/") != prefix.count("/") + 1:
            continue
        device, leaf = topic[len(prefix):].split("/")
        row = devices.setdefault(device, {"device": device, "online": None})
        if leaf == "online":
            row["online"] = payload == b"1" if payload else None
        elif leaf == "state":
            try:
                state = json.loads(payload) if payload else {}
            except ValueError:
                continue
            if isinstance(state, dict):
                row.update({k: state.get(k) for k in COLUMNS[2:] + ("rollout",)})  # rollout: JSON and summary only
    return devices


def format_table(devices):
    def cell(row, col):
        v = row.get(col)
        if col == "online":
            return {True: "yes", False: "NO", None: "?"}[v]
        if col == "progress" and v is not None:
            return "%s%%" % v
        return "-" if v is None else str(v)

    rows = [COLUMNS] + [tuple(cell(devices[d], c) for c in COLUMNS) for d in sorted(devices)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows)


def release_summary(devices, release):
    """Where the fleet stands with one release: {"installed", "updating", "failed", "elsewhere",
    "offline", "total", "reasons": {reason: count}, "rollouts": {rollout id: count}}. A device is on
    the release when its retained state names it (`release` may be a prefix of the id)."""
    out = {"installed": 0, "updating": 0, "failed": 0, "elsewhere": 0, "offline": 0, "total": len(devices),
           "reasons": {}, "rollouts": {}}
    for row in devices.values():
        if row.get("online") is False:
            out["offline"] += 1
        if not (row.get("release") or "").startswith(release):
            out["elsewhere"] += 1
            continue
        if row.get("rollout"):
            out["rollouts"][row["rollout"]] = out["rollouts"].get(row["rollout"], 0) + 1
        if row.get("reason"):
            out["failed"] += 1
            out["reasons"][row["reason"]] = out["reasons"].get(row["reason"], 0) + 1
        elif row.get("state") == "idle":
            out["installed"] += 1
        else:
            out["updating"] += 1
    return out


def format_summary(release, s):
    text = "release %s: installed %d of %d, updating %d, failed %d, elsewhere %d; offline %d" % (
        release, s["installed"], s["total"], s["updating"], s["failed"], s["elsewhere"], s["offline"])
    for title, counts in (("failure reasons", s["reasons"]), ("rollouts", s["rollouts"])):
        if counts:
            text += "\n  %s: %s" % (title, ", ".join("%s %d" % kv for kv in sorted(counts.items())))
    return text


def cmd_status(args):
    filters = ["%s/status/+/state" % args.root, "%s/status/+/online" % args.root]
    exact = fleet.topics_from_args(args, fleet.Fleet.status_topics)
    with broker.from_args(args) as conn:
        held = conn.retained_under(args.root, filters, exact, "the devices' states", settle=args.wait)
        devices = fleet_status(held.items(), args.root)
        if args.release:
            summary = release_summary(devices, args.release)
            print(json.dumps(summary, indent=1, sort_keys=True) if args.json else format_summary(args.release, summary))
            return EXIT_OK
        if args.once or args.json:
            print(json.dumps(devices, indent=1, sort_keys=True) if args.json else format_table(devices))
            return EXIT_OK
        conn.client.subscribe([(f, 1) for f in filters])
        table = LiveTable(sys.stdout, format_table, lambda row: format_table({row["device"]: row}).splitlines()[1])
        table.show(devices)
        while True:  # live, until Ctrl-C
            msg = conn.messages.get()
            before = {d: dict(row) for d, row in devices.items()}
            fleet_status([(msg.topic, msg.payload)], args.root, devices)
            changed = [d for d in devices if devices[d] != before.get(d)]
            if changed:
                table.show(devices, changed)


# --- command line -----------------------------------------------------------------------------

def _add_target(p, required_help):
    p.add_argument("--fleet", help=required_help)
    who = p.add_mutually_exclusive_group()
    who.add_argument("--group", help="only this group of the fleet")
    who.add_argument("--device", help="only this device (a pin: it wins over group and fleet)")


def _add_audit(p):
    p.add_argument("--audit-dir", metavar="FLEET_DIR",
                   help="record this in the audit log of that fleet folder (default: $MPOTA_FLEET, if set)")


def register(subparsers):
    p = subparsers.add_parser(
        "publish", help="upload a signed release to the broker and offer it to devices",
        description="Upload the image's chunks and its signed manifest as retained messages, then "
        "offer it to a fleet, a group or one device. Devices that come online later still get it.")
    p.add_argument("manifest", help="the signed manifest blob")
    p.add_argument("image", help="the image that manifest signs")
    p.add_argument("--delta", metavar="DELTA_MANIFEST",
                   help="also publish this signed delta of the same release (`mpota manifest --delta-from`): "
                   "devices running its base take it, the others the full release")
    p.add_argument("--delta-from", metavar="OLD.bin", help="the base image the delta was made from")
    _add_target(p, "the fleet to offer the release to")
    p.add_argument("--no-target", action="store_true", help="upload only; offer it later")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    timestamp.add_arguments(p)
    _add_audit(p)
    broker.add_arguments(p)
    p.set_defaults(func=cmd_publish)

    p = subparsers.add_parser(
        "prune", help="delete old releases from the broker, or clear a target",
        description="Delete a release's retained chunks and manifest. Refuses while a manifest "
        "topic still offers it unless --untarget. With --fleet [--group|--device], clear that "
        "target so its devices fall back to the next level.")
    p.add_argument("release", nargs="*", help="release id (16 hex characters)")
    p.add_argument("--untarget", action="store_true", help="also clear manifest topics that offer the release")
    _add_target(p, "clear this fleet's manifest topic (with --group/--device: that one)")
    fleet.add_topics_argument(p)
    _add_audit(p)
    broker.add_arguments(p)
    p.set_defaults(func=cmd_prune)

    p = subparsers.add_parser(
        "status", help="table of devices from their retained status",
        description="Show every device's last reported state, then keep it up to date until Ctrl-C: on a "
        "terminal one table redrawn in place, piped a line per change. --json or --once for scripts.")
    p.add_argument("--once", action="store_true", help="print the table once and exit")
    p.add_argument("--json", action="store_true", help="print JSON once and exit")
    p.add_argument("--wait", type=float, default=1.0, help="seconds of quiet that end the first read (default 1)")
    p.add_argument("--release", help="summarise this release's progress across the fleet (id or prefix) and exit")
    fleet.add_topics_argument(p)
    broker.add_arguments(p)
    p.set_defaults(func=cmd_status)
