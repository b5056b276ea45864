"""The rollout's decisions without a broker: stable wave membership, waiting for confirmation
and soak, the abort criteria, timeouts that only run while a device can act, pause/resume/abort,
state that survives a restart, and the CLI around it."""
import json

import pytest

from plugin_broker import make_release
from mpota import rollout
from mpota.audit import AuditLog
from mpota.cli import CliError, main
from mpota.fleet import Fleet
from mpota.signing import manifest_id

BLOB = make_release(b"\x5a" * 5000, version="2.0.0", counter=2)
RID = manifest_id(BLOB)


@pytest.fixture
def fleet(tmp_path):
    f = Fleet.init(tmp_path / "fleet", "plant")
    for i in range(40):
        f.add("d%02d" % i, "canary" if i < 2 else None)
    return f


def plan(fleet, rid="r1", devices=None, **kw):
    kw.setdefault("canary", ["d00", "d01"])
    kw.setdefault("percents", (25, 100))
    return rollout.new_plan(rid, fleet, BLOB, devices or sorted(fleet.devices()), **kw)


def report(engine, device, kind, now, **fields):
    engine.event(device, dict(fields, kind=kind, release=fields.get("release", RID)), now)


ALL_ONLINE = {"d%02d" % i: True for i in range(40)}


def test_percent_waves_are_stable_and_only_grow():
    devices = ["dev-%d" % i for i in range(2000)]
    chosen = {p: {d for d in devices if rollout.bucket(d, "r1") < p * 100} for p in (1, 5, 25, 50, 100)}
    assert chosen[1] <= chosen[5] <= chosen[25] <= chosen[50] <= chosen[100] == set(devices)
    assert 350 < len(chosen[25]) < 650  # a fair sample
    other = {d for d in devices if rollout.bucket(d, "r2") < 2500}
    assert other != chosen[25]  # another rollout draws another sample


def test_waves_wait_for_confirmation_and_soak(fleet):
    p = plan(fleet, soak_s=10)
    e = rollout.Engine(p)
    assert e.step(0, ALL_ONLINE) == [("pin", "d00"), ("pin", "d01")]
    report(e, "d00", "offered", 1)
    report(e, "d00", "confirmed", 2)
    assert e.step(3, ALL_ONLINE) == []  # d01 has not confirmed
    report(e, "d01", "confirmed", 4)
    assert e.step(5, ALL_ONLINE) == []  # soaking
    wave2 = e.step(15, ALL_ONLINE)
    members = [d for _, d in wave2]
    assert members and "d00" not in members and all(rollout.bucket(d, "r1") < 2500 for d in members)
    for d in members:
        report(e, d, "confirmed", 16)
    assert e.step(17, ALL_ONLINE) == [] and e.step(27, ALL_ONLINE)  # soak, then the rest
    rest = [d for d, i in p["devices"].items() if i["wave"] == 2]
    assert sorted(set(rest) | set(members) | {"d00", "d01"}) == sorted(fleet.devices())
    for d in rest:
        report(e, d, "confirmed", 30)
    e.step(31, ALL_ONLINE)
    e.step(41, ALL_ONLINE)
    assert p["status"] == "succeeded"
    assert [a["action"] for a in e.audit if a["action"] in ("wave_start", "complete")] == \
        ["wave_start"] * 3 + ["complete"]


def test_failures_past_the_threshold_halt_and_unpin_the_unfinished(fleet):
    p = plan(fleet, canary=["d00", "d01", "d02"], threshold_count=2)
    e = rollout.Engine(p)
    e.step(0, ALL_ONLINE)
    report(e, "d00", "confirmed", 1)
    report(e, "d01", "rolled_back", 2, reason="health_check_failed")
    assert e.step(3, ALL_ONLINE) == [] and p["status"] == "running"
    report(e, "d02", "rejected", 4, reason="wrong_board")
    assert e.step(5, ALL_ONLINE) == [("unpin", "d01"), ("unpin", "d02")]  # d00 keeps what it confirmed
    assert p["status"] == "halted" and p["halt_reason"] == "2 failures >= 2"
    assert e.step(6, ALL_ONLINE) == [] and len(p["devices"]) == 3  # nobody else, ever


def test_percentage_threshold_waits_for_min_executed(fleet):
    p = plan(fleet, canary=["d00", "d01", "d02"], threshold_percentage=50, min_executed=3)
    e = rollout.Engine(p)
    e.step(0, ALL_ONLINE)
    report(e, "d00", "rolled_back", 1, reason="watchdog")
    report(e, "d01", "rolled_back", 1, reason="watchdog")
    e.step(2, ALL_ONLINE)
    assert p["status"] == "running"  # 2 of 2 failed, but fewer than 3 executed
    report(e, "d02", "confirmed", 3)
    e.step(4, ALL_ONLINE)
    assert p["status"] == "halted" and p["halt_reason"] == "2 of 3 executed failed >= 50%"


def test_timeouts_run_only_while_the_device_can_act(fleet):
    p = plan(fleet, timeout_s=60, threshold_count=2)
    e = rollout.Engine(p)
    offline = dict(ALL_ONLINE, d01=False)
    e.step(0, offline)
    report(e, "d00", "offered", 10)
    e.step(100, offline)
    assert p["devices"]["d00"]["status"] == "timed_out" and p["devices"]["d01"]["status"] == "notified"
    e.step(500, offline)
    assert p["devices"]["d01"]["status"] == "notified"  # offline: it catches up when it returns
    e.step(510, ALL_ONLINE)
    e.step(560, ALL_ONLINE)
    assert p["devices"]["d01"]["status"] == "notified"
    e.step(571, ALL_ONLINE)
    assert p["devices"]["d01"]["status"] == "timed_out" and p["status"] == "halted"


def test_an_offline_canary_does_not_block_the_next_wave(fleet):
    p = plan(fleet, percents=(100,))
    e = rollout.Engine(p)
    e.step(0, dict(ALL_ONLINE, d01=False))
    report(e, "d00", "confirmed", 1)
    assert len(e.step(2, dict(ALL_ONLINE, d01=False))) == 38
    report(e, "d01", "confirmed", 3)  # back later: its retained pin brought it the release
    assert p["devices"]["d01"]["status"] == "succeeded"


def test_a_rollout_whose_canaries_never_confirmed_is_not_a_success(fleet):
    p = plan(fleet, percents=(100,))
    e = rollout.Engine(p)
    offline = dict(ALL_ONLINE, d00=False, d01=False)
    e.step(0, offline)
    for now in (10, 10000, 100000):  # both canaries offline: the wave "settles" with nobody confirmed
        assert e.step(now, offline) == [] and p["status"] == "running" and p["wave"] == 0
    report(e, "d01", "confirmed", 100001)
    assert len(e.step(100002, offline)) == 38  # one confirmation: the next wave goes out


def test_no_success_without_a_confirmation(fleet):
    p = plan(fleet, canary=[], percents=(100,), devices=["d05", "d06"])
    e = rollout.Engine(p)
    offline = dict(ALL_ONLINE, d05=False, d06=False)
    e.step(0, offline)
    assert e.step(50, offline) == [] and p["status"] == "running"
    report(e, "d06", "confirmed", 60)
    e.step(61, offline)
    assert p["status"] == "succeeded"


def test_reports_of_other_releases_and_rollouts_are_ignored(fleet):
    p = plan(fleet)
    e = rollout.Engine(p)
    e.step(0, ALL_ONLINE)
    report(e, "d00", "rolled_back", 1, release="ff" * 8, reason="watchdog")
    report(e, "d00", "rolled_back", 1, rollout="older", reason="watchdog")
    report(e, "d05", "confirmed", 1)  # not in a wave yet
    assert p["devices"]["d00"]["status"] == "notified" and "d05" not in p["devices"]


def test_retained_state_tells_what_happened_while_no_runner_listened(fleet):
    p = plan(fleet)
    e = rollout.Engine(p)
    e.step(0, ALL_ONLINE)
    e.state("d00", {"state": "idle", "release": RID, "version": "2.0.0", "event": "confirmed", "rollout": "r1"}, 5)
    e.state("d01", {"state": "idle", "release": RID, "version": "1.0.0", "event": "rolled_back",
                    "reason": "watchdog", "rollout": "r1"}, 5)
    assert p["devices"]["d00"]["status"] == "succeeded"
    assert p["devices"]["d01"]["status"] == "rolled_back" and p["devices"]["d01"]["reason"] == "watchdog"
    e2 = rollout.Engine(plan(fleet, rid="r2"))
    e2.step(0, ALL_ONLINE)  # a device that rebooted since: its state names the release it runs
    e2.state("d00", {"state": "idle", "release": RID, "version": "2.0.0", "event": "booted"}, 5)
    assert e2.plan["devices"]["d00"]["status"] == "succeeded"
    # Success is decided by release id, never by a version string (official builds report none).
    e3 = rollout.Engine(plan(fleet, rid="r3"))
    e3.step(0, ALL_ONLINE)
    e3.state("d00", {"state": "idle", "release": None, "version": "2.0.0", "event": "booted"}, 5)
    e3.state("d01", {"state": "idle", "release": "0" * 16, "version": "2.0.0", "event": "booted"}, 5)
    assert [e3.plan["devices"][d]["status"] for d in ("d00", "d01")] == ["notified", "notified"]
    e3.state("d00", {"state": "idle", "release": RID, "version": None, "event": "booted"}, 5)
    assert e3.plan["devices"]["d00"]["status"] == "succeeded"


def test_plan_checks(fleet):
    with pytest.raises(CliError, match="canary devices not in the targets: b"):
        rollout.new_plan("r1", fleet, BLOB, ["a"], canary=["b"])
    with pytest.raises(CliError, match="wave percentages must rise"):
        rollout.new_plan("r1", fleet, BLOB, ["a"], percents=(50, 10))
    with pytest.raises(CliError, match="rollout 'r/1'"):
        rollout.new_plan("r/1", fleet, BLOB, ["a"])
    with pytest.raises(CliError, match="failure types"):
        rollout.new_plan("r1", fleet, BLOB, ["a"], failure_types=("crashed",))


def test_state_file_survives_and_controls_apply(fleet):
    store = rollout.Store(fleet)
    store.create(plan(fleet), BLOB)
    with pytest.raises(CliError):
        store.create(plan(fleet), BLOB)
    with store.locked("r1") as p:
        rollout.Engine(p).step(0, ALL_ONLINE)
    assert store.load("r1")["wave"] == 0 and store.pin("r1") == BLOB
    with pytest.raises(RuntimeError):  # a decision that fails half-way leaves the file as it was
        with store.locked("r1") as p:
            p["wave"] = 7
            raise RuntimeError("killed")
    assert store.load("r1")["wave"] == 0
    assert not list(store.dir.glob("*.tmp"))
    rollout.control(store, "r1", "pause")
    with pytest.raises(CliError):
        rollout.control(store, "r1", "pause")
    with store.locked("r1") as p:  # paused: no new wave, whatever happens
        e = rollout.Engine(p)
        report(e, "d00", "confirmed", 1)
        report(e, "d01", "confirmed", 1)
        assert e.step(99999, ALL_ONLINE) == []
    rollout.control(store, "r1", "resume")
    rollout.control(store, "r1", "abort")
    with store.locked("r1") as p:
        assert rollout.Engine(p).step(5, ALL_ONLINE) == []  # both canaries succeeded: their pins stay
        assert p["cancelled"] and p["status"] == "aborted"
    with pytest.raises(CliError):
        rollout.control(store, "r1", "resume")
    actions = [e["action"] for e in AuditLog(fleet.dir).entries(rollout="r1")]
    assert actions == ["pause", "resume", "abort"]


def test_rollout_status_command(fleet, capsys):
    store = rollout.Store(fleet)
    store.create(plan(fleet), BLOB)
    with store.locked("r1") as p:
        e = rollout.Engine(p)
        e.step(0, ALL_ONLINE)
        report(e, "d00", "confirmed", 1)
    assert main(["rollout", "status", "r1", "--fleet-dir", str(fleet.dir)]) == 0
    text = capsys.readouterr().out
    assert "rollout r1: release %s (version 2.0.0), running" % RID in text
    assert "* wave 1 canary" in text and "notified 1, succeeded 1" in text and "untouched: 38 of 40" in text
    assert main(["rollout", "status", "--json", "--fleet-dir", str(fleet.dir)]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == "r1"
    assert main(["rollout", "status", "nope", "--fleet-dir", str(fleet.dir)]) == 2
