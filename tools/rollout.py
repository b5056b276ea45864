"""Staged rollouts: a release goes to a canary set, then to growing percentages of the fleet,
each wave only after the previous one confirmed and soaked, and the whole rollout halts by
itself when failures pass a threshold.

Delivery is by device-level pins (docs/FLEET.md): a wave's members get the release's manifest
(followed by its delta manifest when the rollout has one: devices running the delta's base take
it, the others the full image) retained on `<root>/manifest/<fleet>/device/<id>` and, beside it, a retained rollout note on
`<root>/rollout/<fleet>/device/<id>` (`{"rollout": id, "release": release}`) that the device
repeats in its status. An offline member picks the pin up when it returns; devices outside the
waves so far see nothing new.

Waves by percentage take the devices whose stable bucket (`bucket(device, rollout)`: SHA-256 of
both ids, 0..9999) is below percent x 100: raising the percentage only adds devices, and a
different rollout draws a different sample.

The state is one JSON file per rollout, `<fleet>/rollouts/<id>.json`, replaced atomically after
every decision; `run` folds device reports into it and can be killed and started again at any
time: it reads the retained device states first, then listens for events."""
import fcntl
import hashlib
import json
import queue
import time
from collections import Counter
from contextlib import contextmanager

from mpota import broker, signing
from mpota.audit import AuditLog
from mpota.cli import CliError
from mpota.fleet import atomic_write, check_id

FAILURES = ("rolled_back", "rejected", "timed_out")
STARTED = ("offered", "downloading", "verified", "awaiting_permission", "installing", "rebooting", "trial",
           "trial_failed")
FINISHED = ("succeeded", "halted", "aborted")


def bucket(device, rollout):
    """The device's stable place in 0..9999 for this rollout."""
    return int.from_bytes(hashlib.sha256(("%s\0%s" % (rollout, device)).encode()).digest()[:4], "big") % 10000


def new_plan(rollout_id, fleet, blob, targets, *, canary=(), percents=(100,), soak_s=0.0, timeout_s=3600.0,
             threshold_count=None, threshold_percentage=None, min_executed=1, failure_types=FAILURES, delta=None):
    """A rollout's initial state. `targets` is the snapshot of devices it may reach; `canary`
    (a subset) forms the first wave, then one wave per percentage of the remaining targets.
    `delta`: the id of a delta manifest of the release that rides in every pin."""
    check_id(rollout_id, "rollout")
    fields = signing.parse_blob(blob)[2]
    unknown = sorted(set(canary) - set(targets))
    if unknown:
        raise CliError("canary devices not in the targets: %s" % ", ".join(unknown))
    if list(percents) != sorted(percents) or not all(0 < p <= 100 for p in percents):
        raise CliError("wave percentages must rise, each in 1..100: %s" % list(percents))
    if not set(failure_types) <= set(FAILURES) or not failure_types:
        raise CliError("failure types: some of %s" % ", ".join(FAILURES))
    waves = ([{"name": "canary", "devices": sorted(canary)}] if canary else []) + \
        [{"name": "%g%%" % p, "percent": p} for p in percents]
    return {"id": rollout_id, "fleet": fleet.name, "root": fleet.root, "release": fields["id"], "delta": delta,
            "version": fields["version"], "status": "running", "created": time.time(), "targets": sorted(targets),
            "waves": waves, "soak_s": soak_s, "timeout_s": timeout_s,
            "abort": {"failure_types": list(failure_types), "threshold_count": threshold_count,
                      "threshold_percentage": threshold_percentage, "min_executed": min_executed},
            "wave": -1, "wave_done": None, "cancelled": False, "halt_reason": None, "devices": {}}


def wave_members(plan, index):
    """Devices wave `index` adds (deterministic: a restarted tool computes the same ones)."""
    wave = plan["waves"][index]
    canary = set(plan["waves"][0]["devices"]) if "devices" in plan["waves"][0] else set()
    if "devices" in wave:
        return list(wave["devices"])
    earlier = set(d for d, info in plan["devices"].items() if info["wave"] < index)
    limit = wave["percent"] * 100
    return [d for d in plan["targets"]
            if d not in canary and d not in earlier and bucket(d, plan["id"]) < limit]


class Engine:
    """The rollout's decisions over its state dict, without I/O. `report()` and `step()` return
    broker actions ("pin" | "unpin", device) and append audit records to `self.audit`
    (kwargs for `AuditLog.record`)."""

    def __init__(self, plan):
        self.plan = plan
        self.audit = []

    def _log(self, actor, action, **kw):
        kw.setdefault("release", self.plan["release"])
        kw.setdefault("rollout", self.plan["id"])
        self.audit.append(dict(kw, actor=actor, action=action))

    # --- device reports ---
    def _ours(self, device, fields):
        info = self.plan["devices"].get(device)
        if info is None or fields.get("rollout") not in (None, self.plan["id"]):
            return None
        release = fields.get("release")
        if release == self.plan["release"] or (release is None and fields.get("rollout") == self.plan["id"]):
            return info
        return None

    def event(self, device, fields, now):
        """One `status/<id>/event` message."""
        info = self._ours(device, fields)
        if info is None:
            return
        kind = fields.get("kind")
        if kind == "offered" and fields.get("encoding"):
            info["encoding"] = fields["encoding"]  # which manifest of the pin it took
        if kind != "downloading":
            self._log(device, "report", device=device, outcome=kind, reason=fields.get("reason"))
        if kind == "confirmed":
            self._finish(info, device, "succeeded", None, now)
        elif kind in ("rolled_back", "rejected"):
            self._finish(info, device, kind, fields.get("reason"), now)
        elif kind in STARTED and info["status"] == "notified":
            info["status"], info["started"] = "in_progress", now

    def state(self, device, fields, now):
        """A retained `status/<id>/state`: what the device says it did while nobody listened."""
        info = self.plan["devices"].get(device)
        if info is None or info["status"] not in ("notified", "in_progress"):
            return
        # A device that booted since it confirmed reports the release it runs (its record of the
        # signed manifest it installed: official builds carry no version in the app descriptor).
        if fields.get("release") == self.plan["release"] and fields.get("event") == "booted" \
                and fields.get("state") == "idle" and not fields.get("reason"):
            fields = dict(fields, event="confirmed")
        info = self._ours(device, fields)
        if info is None:
            return
        last = fields.get("event")
        if last in ("confirmed", "rolled_back", "rejected"):
            self.event(device, dict(fields, kind=last), now)
        elif fields.get("state") not in (None, "idle") and info["status"] == "notified":
            info["status"], info["started"] = "in_progress", now

    def _finish(self, info, device, status, reason, now):
        if info["status"] in ("notified", "in_progress"):
            info.update(status=status, reason=reason, finished=now)

    # --- decisions ---
    def counts(self, devices=None):
        out = {}
        for d, info in self.plan["devices"].items():
            if devices is None or d in devices:
                out[info["status"]] = out.get(info["status"], 0) + 1
        return out

    def _threshold_passed(self):
        a = self.plan["abort"]
        counts = self.counts()
        failed = sum(counts.get(t, 0) for t in a["failure_types"])
        executed = failed + counts.get("succeeded", 0) + sum(counts.get(t, 0) for t in FAILURES
                                                             if t not in a["failure_types"])
        if a["threshold_count"] is not None and failed >= a["threshold_count"]:
            return "%d failures >= %d" % (failed, a["threshold_count"])
        if a["threshold_percentage"] is not None and executed >= a["min_executed"] and \
                failed * 100.0 >= a["threshold_percentage"] * executed:
            return "%d of %d executed failed >= %g%%" % (failed, executed, a["threshold_percentage"])
        return None

    def step(self, now, online):
        """Time passes: timeouts, the abort criteria, the next wave. `online`: {device: bool}."""
        plan, actions = self.plan, []
        if plan["status"] in ("running", "paused"):
            self._timeouts(now, online)
            why = self._threshold_passed()
            if why:
                plan["status"], plan["halt_reason"] = "halted", why
                self._log("rollout", "halt", outcome="halted", reason="failure_threshold")
        if plan["status"] in ("halted", "aborted") and not plan["cancelled"]:
            plan["cancelled"] = True
            for d, info in sorted(plan["devices"].items()):
                if info["status"] != "succeeded":  # the rest stay on (or go back to) what they run
                    actions.append(("unpin", d))
                    if info["status"] in ("notified", "in_progress"):
                        info.update(status="cancelled", finished=now)
                    self._log("rollout", "unpin", device=d, outcome=info["status"])
        if plan["status"] == "running":
            actions += self._advance(now, online)
        return actions

    def _timeouts(self, now, online):
        limit = self.plan["timeout_s"]
        for d, info in sorted(self.plan["devices"].items()):
            if info["status"] == "in_progress":
                since = info["started"]
            elif info["status"] == "notified":
                if not online.get(d):
                    info["online_since"] = None  # offline: it catches up when it returns
                    continue
                if info.get("online_since") is None:
                    info["online_since"] = now
                since = info["online_since"]
            else:
                continue
            if now - since > limit:
                info.update(status="timed_out", reason="timed_out", finished=now)
                self._log("rollout", "timed_out", device=d, outcome="timed_out", reason="timed_out")

    def _wave_settled(self, online):
        """Every member has finished or is offline (it catches up later); a canary wave also
        needs a member that confirmed: canaries that were all offline prove nothing."""
        members = [info for info in self.plan["devices"].values() if info["wave"] == self.plan["wave"]]
        for d, info in self.plan["devices"].items():
            if info["wave"] != self.plan["wave"]:
                continue
            if info["status"] == "in_progress" or (info["status"] == "notified" and online.get(d)):
                return False
        if "devices" in self.plan["waves"][self.plan["wave"]]:
            return any(info["status"] == "succeeded" for info in members)
        return True

    def _advance(self, now, online):
        plan = self.plan
        if plan["wave"] >= 0:
            if plan["wave_done"] is None:
                if not self._wave_settled(online):
                    return []
                plan["wave_done"] = now
                self._log("rollout", "wave_done", outcome=plan["waves"][plan["wave"]]["name"])
            if now - plan["wave_done"] < plan["soak_s"]:
                return []
        if plan["wave"] + 1 >= len(plan["waves"]):
            if not any(info["status"] == "succeeded" for info in plan["devices"].values()):
                return []  # not a success until a device has confirmed the release
            plan["status"] = "succeeded"
            self._log("rollout", "complete", outcome="succeeded")
            return []
        plan["wave"] += 1
        plan["wave_done"] = None
        members = wave_members(plan, plan["wave"])
        self._log("rollout", "wave_start", outcome=plan["waves"][plan["wave"]]["name"])
        for d in members:
            plan["devices"][d] = {"wave": plan["wave"], "status": "notified", "notified": now, "reason": None}
            self._log("rollout", "pin", device=d, outcome="notified")
        return [("pin", d) for d in members]


# --- the state file ---------------------------------------------------------------------------

class Store:
    """A fleet's rollout files: `<id>.json` (state), `<id>.manifest` (what a pin carries: the
    signed blob, then its delta manifest if any), `<id>.lock` (one writer at a time: the runner
    and pause/resume/abort)."""

    def __init__(self, fleet):
        self.fleet = fleet
        self.dir = fleet.dir / "rollouts"
        self.dir.mkdir(exist_ok=True)

    def ids(self):
        return sorted(p.stem for p in self.dir.glob("*.json"))

    def create(self, plan, blob, delta=None):
        if (self.dir / (plan["id"] + ".json")).exists():
            raise CliError("rollout %s exists already" % plan["id"])
        atomic_write(self.dir / (plan["id"] + ".manifest"), blob + (delta or b""))
        atomic_write(self.dir / (plan["id"] + ".json"), json.dumps(plan, indent=1, sort_keys=True))

    def load(self, rollout_id):
        try:
            return json.loads((self.dir / (rollout_id + ".json")).read_text())
        except FileNotFoundError:
            raise CliError("no rollout %s in fleet %s (known: %s)" % (
                rollout_id, self.fleet.name, ", ".join(self.ids()) or "none")) from None

    def pin(self, rollout_id):
        """The manifest message of the rollout's pins."""
        return (self.dir / (rollout_id + ".manifest")).read_bytes()

    @contextmanager
    def locked(self, rollout_id):
        """(plan) for a read-modify-write; saved atomically when the block ends without error."""
        with open(self.dir / (rollout_id + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            plan = self.load(rollout_id)
            yield plan
            atomic_write(self.dir / (rollout_id + ".json"), json.dumps(plan, indent=1, sort_keys=True))


# --- running against the broker ---------------------------------------------------------------

class Runner:
    """Folds reports from the broker into a rollout and carries out its decisions."""

    def __init__(self, fleet, rollout_id, conn):
        self.store = Store(fleet)
        self.id = rollout_id
        self.conn = conn
        self.audit = AuditLog(fleet.dir)
        self.online = {}
        self.reports = []  # (leaf, device, fields)
        plan = self.store.load(rollout_id)
        self.root, self.fleet_name = plan["root"], plan["fleet"]
        self.pin = self.store.pin(rollout_id)
        self.release = plan["release"]
        self.targets = plan["targets"]

    def listen(self):
        """Subscribe to the fleet's status: the retained states arrive first (what happened
        while no runner was listening), then every event. A broker that sends no retained message
        to wildcard subscriptions (RabbitMQ) is also asked for each target's state and presence by
        name; a message matching both subscriptions may then come twice, which changes nothing."""
        exact = [] if self.conn.wildcard_retained(self.root) else self.store.fleet.status_topics(self.targets)
        prefix = "%s/status/+/" % self.root
        self.conn.client.subscribe([(prefix + leaf, 1) for leaf in ("state", "event", "online")] + [(t, 1) for t in exact])

    def _drain(self, wait):
        end = time.monotonic() + wait
        while True:
            try:
                msg = self.conn.messages.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                return
            parts = msg.topic.split("/")
            if len(parts) != 4 or parts[1] != "status":
                continue
            device, leaf = parts[2], parts[3]
            if leaf == "online":
                self.online[device] = msg.payload == b"1"
                continue
            try:
                fields = json.loads(msg.payload)
            except ValueError:
                continue
            if isinstance(fields, dict):
                self.reports.append((leaf, device, fields))

    def cycle(self, wait=0.2, control_only=False):
        """Gather reports for up to `wait` s, then decide under the lock. Returns the plan."""
        if not control_only:
            self._drain(wait)
        reports, self.reports = self.reports, []
        with self.store.locked(self.id) as plan:
            engine = Engine(plan)
            now = time.time()
            for leaf, device, fields in reports:
                (engine.event if leaf == "event" else engine.state)(device, fields, now)
            actions = engine.step(now, self.online)
            self._execute(actions)
            for entry in engine.audit:
                self.audit.record(**entry)
        return plan

    def _execute(self, actions):
        infos = []
        for action, device in actions:
            note, pin = broker.note_topic(self.root, self.fleet_name, device), broker.target_topic(self.root, self.fleet_name,
                                                                                            device=device)
            if action == "pin":  # the note first: a device never acts on a pin without its rollout id
                payload = json.dumps({"rollout": self.id, "release": self.release}).encode()
                infos += [self.conn.publish(note, payload), self.conn.publish(pin, self.pin)]
            else:
                infos += [self.conn.publish(pin, b""), self.conn.publish(note, b"")]
        self.conn.wait(infos)

    def repin(self):
        """After a restart: publish again the pins of members still under way (idempotent;
        covers a kill between publishing and saving)."""
        plan = self.store.load(self.id)
        if plan["status"] == "running":
            self._execute([("pin", d) for d, i in sorted(plan["devices"].items())
                           if i["status"] in ("notified", "in_progress")])

    def run(self, until=None, on_cycle=None):
        """Cycle until the rollout is finished (or `until` monotonic time); returns the plan."""
        self.listen()
        self.repin()
        self._drain(0.5)  # the retained states
        while True:
            plan = self.cycle()
            if on_cycle:
                on_cycle(plan)
            if plan["status"] in FINISHED or (until is not None and time.monotonic() > until):
                return plan


CONTROLS = {"pause": (("running",), "paused"), "resume": (("paused",), "running"),
            "abort": (("running", "paused"), "aborted")}


def control(store, rollout_id, action, actor="publisher"):
    """pause / resume / abort: change the status under the lock and audit it. Pins of an
    aborted rollout are cleared by the next `Runner.cycle()` (the runner's, or the command's)."""
    allowed, status = CONTROLS[action]
    with store.locked(rollout_id) as plan:
        if plan["status"] not in allowed:
            raise CliError("rollout %s is %s: cannot %s it" % (rollout_id, plan["status"], action))
        plan["status"] = status
    AuditLog(store.fleet.dir).record(actor, action, release=plan["release"], rollout=rollout_id, outcome=status)
    return plan


def summary(plan):
    """Human-readable lines: status, and per wave its members' outcomes."""
    engine = Engine(plan)
    lines = ["rollout %s: release %s (version %s), %s%s" % (
        plan["id"], plan["release"], plan["version"], plan["status"],
        " (%s)" % plan["halt_reason"] if plan["halt_reason"] else "")]
    if plan.get("delta"):
        took = Counter(info.get("encoding") or "not yet" for info in plan["devices"].values())
        lines.append("  delta %s beside the full image; taken: %s" % (
            plan["delta"], ", ".join("%s %d" % kv for kv in sorted(took.items())) or "none yet"))
    for i, wave in enumerate(plan["waves"]):
        members = [d for d, info in plan["devices"].items() if info["wave"] == i]
        counts = engine.counts(members)
        mark = "*" if i == plan["wave"] and plan["status"] in ("running", "paused") else " "
        text = ", ".join("%s %d" % (k, v) for k, v in sorted(counts.items())) if members else \
            ("not started" if i > plan["wave"] else "no devices")
        lines.append("%s wave %d %-8s %3d devices  %s" % (mark, i + 1, wave["name"], len(members), text))
    current = [info["status"] for info in plan["devices"].values() if info["wave"] == plan["wave"]]
    if plan["status"] == "running" and current and "succeeded" not in current and "in_progress" not in current:
        lines.append("  waiting for a device of wave %d to confirm (offline devices catch up when they return)"
                     % (plan["wave"] + 1))
    untouched = len(plan["targets"]) - len(plan["devices"])
    lines.append("  untouched: %d of %d targets" % (untouched, len(plan["targets"])))
    return lines
