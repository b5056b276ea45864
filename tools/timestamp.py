"""Timestamp records for manifest topics (docs/FORMAT.md section 5): made with the online
timestamp key, appended to a level's manifest message, refreshed before they expire.

The timestamp key can only vouch that a release is current; it cannot authorise code, so it may
live on the machine that runs `mpota timestamp` from a timer, unlike the release key."""
import time

from mpota import signing
from mpota.cli import CliError

DEFAULT_LIFE = 86400  # a day: a frozen device notices within a day


def level_of(topic, root):
    """(level, fleet, name) of a manifest topic `<root>/manifest/<fleet>[/group|device/<name>]`."""
    parts = topic.split("/")
    if len(parts) < 3 or parts[0] != root or parts[1] != "manifest":
        raise CliError("%s is not a manifest topic under %s/manifest" % (topic, root))
    if len(parts) == 3:
        return "fleet", parts[2], None
    if len(parts) == 5 and parts[3] in ("group", "device"):
        return parts[3], parts[2], parts[4]
    raise CliError("%s is not a manifest topic" % topic)


class Stamper:
    """Signs timestamp records with `key` that expire `life` seconds after `now()`."""

    def __init__(self, key, root, life=DEFAULT_LIFE, now=time.time):
        if not 0 < life <= signing.STAMP_LIFE_MAX:
            raise CliError("a timestamp lives 1 s to 31 days")
        self.key, self.root, self.life, self.now = key, root, life, now

    def record(self, topic, blob):
        """The record vouching for the manifest `blob` at manifest topic `topic`."""
        level, fleet, name = level_of(topic, self.root)
        fields = signing.parse_blob(blob)[2]
        issued = int(self.now())
        return signing.build_timestamp(level=level, fleet=fleet, name=name, release=fields["id"],
                                       counter=fields["counter"], issued=issued, expires=issued + self.life,
                                       private_key=self.key)


def refresh(conn, stamper, manifest_topics=None):
    """Give every retained manifest topic a new record; returns the topics refreshed.
    `manifest_topics`: a function giving a fleet's own (`fleet.topics_from_args`), read one by one
    on a broker that sends no retained message to wildcard subscriptions (without it such a broker
    is a CliError, never a silent no-op)."""
    retained = conn.retained_under(stamper.root, ["%s/manifest/#" % stamper.root], manifest_topics,
                                   "the manifest topics to refresh")
    messages = {}
    for topic, message in sorted(retained.items()):
        if message:
            blob, _, variants = signing.split_variants(message)
            messages[topic] = blob + stamper.record(topic, blob) + variants
    conn.wait([conn.publish(t, m) for t, m in messages.items()])
    return sorted(messages)


def add_arguments(parser, required=False):
    parser.add_argument("--timestamp-key", required=required, metavar="PEM",
                        help="the online timestamp key (role timestamp): append a fresh timestamp record to each "
                        "manifest topic; needed once devices trust a timestamp key (password from $MPOTA_KEY_PASSWORD)")
    parser.add_argument("--timestamp-life", type=int, default=DEFAULT_LIFE, metavar="SECONDS",
                        help="how long a record vouches (default: a day); refresh with `mpota timestamp` before then")


def from_args(args):
    """A Stamper from --timestamp-key, or None when it is not given."""
    if not args.timestamp_key:
        return None
    import os

    from mpota.cmd_keys import PASSWORD_ENV

    try:
        key = signing.load_private_key(args.timestamp_key, os.environ.get(PASSWORD_ENV))
    except (OSError, ValueError, TypeError) as exc:
        raise CliError("cannot load the timestamp key %s: %s" % (args.timestamp_key, exc)) from None
    return Stamper(key, args.root, args.timestamp_life)
