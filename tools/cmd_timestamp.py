"""`mpota timestamp`: refresh the timestamp records on every retained manifest topic.

Run it from a timer more often than `--timestamp-life` (e.g. hourly for a day's life): devices
that trust a timestamp key refuse a manifest whose record has expired (docs/FORMAT.md section 5)."""
from mpota import broker, fleet, timestamp
from mpota.cmd_publish import _add_audit, _audit


def cmd_timestamp(args):
    stamper = timestamp.from_args(args)
    manifest_topics = fleet.topics_from_args(args, fleet.Fleet.manifest_topics)
    with broker.from_args(args) as conn:
        topics = timestamp.refresh(conn, stamper, manifest_topics)
    for topic in topics:
        print("refreshed %s (valid %d s)" % (topic, args.timestamp_life))
    _audit(args, "timestamp", outcome="%d manifest topics refreshed" % len(topics))


def register(subparsers):
    p = subparsers.add_parser(
        "timestamp", help="re-sign the timestamp records of every manifest topic (run from a timer)",
        description="Give every retained manifest topic under --root a fresh timestamp record signed by the "
        "online timestamp key, so that devices know the offered releases are still current. A key with "
        "the timestamp role can only vouch for freshness, never authorise code.")
    timestamp.add_arguments(p, required=True)
    fleet.add_topics_argument(p)
    _add_audit(p)
    broker.add_arguments(p)
    p.set_defaults(func=cmd_timestamp)
