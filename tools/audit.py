"""The audit trail: one JSON object per line in `<fleet>/audit.jsonl`, only ever appended.

Every record has the same keys: `time` (UTC, ISO 8601 with milliseconds), `actor` (`publisher`,
`rollout`, or a device id), `action`, `release`, `rollout`, `device`, `outcome`, `reason`
(a reason code from the device or the rollout, or null). Each record is one `write` on a file
opened for appending, so concurrent writers never interleave inside a line."""
import datetime
import json
import os
from pathlib import Path

KEYS = ("time", "actor", "action", "release", "rollout", "device", "outcome", "reason")
AUDIT_FILE = "audit.jsonl"


def now_iso(ts=None):
    moment = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc) if ts is not None else \
        datetime.datetime.now(datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text):
    """An ISO 8601 time (a date alone means its midnight, no zone means UTC) as a POSIX time."""
    moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


class AuditLog:
    def __init__(self, folder):
        self.path = Path(folder) / AUDIT_FILE

    def record(self, actor, action, *, release=None, rollout=None, device=None, outcome=None, reason=None, at=None):
        entry = {"time": now_iso(at), "actor": actor, "action": action, "release": release, "rollout": rollout,
                 "device": device, "outcome": outcome, "reason": reason}
        line = (json.dumps(entry, sort_keys=False) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        return entry

    def entries(self, device=None, release=None, rollout=None, actor=None, action=None, since=None, until=None):
        """Records in the order written, filtered; `since`/`until` are POSIX times. A torn last
        line (the writer was killed mid-write) is skipped."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if device and entry.get("device") != device and entry.get("actor") != device:
                continue
            if release and not (entry.get("release") or "").startswith(release):
                continue
            if (rollout and entry.get("rollout") != rollout) or (actor and entry.get("actor") != actor) \
                    or (action and entry.get("action") != action):
                continue
            if since is not None or until is not None:
                t = parse_time(entry["time"])
                if (since is not None and t < since) or (until is not None and t > until):
                    continue
            out.append(entry)
        return out


def format_entries(entries):
    """One line per record: time, actor, action, then the fields that are set."""
    lines = []
    for e in entries:
        extra = ["%s=%s" % (k, e[k]) for k in KEYS[3:] if e.get(k) is not None]
        lines.append("%s  %-10s %-14s %s" % (e["time"], e["actor"], e["action"], " ".join(extra)))
    return "\n".join(lines)
