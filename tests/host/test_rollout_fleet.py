"""Staged rollouts on a fleet of 20 simulated boards (the project's boot.py and ota.service with
the fleet test app), each with its own certificate from the fleet CA, behind mosquitto running
the configuration `mpota fleet broker-config` generates. The rollouts are driven by the real
CLI: a bad release halts after its canaries roll back and nobody else is touched; a good one
reaches everyone in three waves, although its runner is killed mid-rollout and started again."""
import json
import re
import signal
import subprocess
import sys
import time

import pytest

from e2e_env import Fleet as Boards
from mpunix import ROOT
from pipeline_env import FW_HEALTHY, FW_UNHEALTHY
from releases import release_id
from mpota import mosquitto_conf
from mpota.audit import AuditLog
from mpota.fleet import Fleet
from mpota.localbroker import LocalBroker

DEVICES = ["dev-%02d" % i for i in range(20)]
CANARIES = DEVICES[:3]
IMAGE = 32 * 1024


class OperatedBoards(Boards):
    """The simulated boards, watched through the operators' own certificate (the broker
    accepts nobody without one)."""

    def __init__(self, tmp_path, broker, sim_device, fleet):
        super().__init__(tmp_path, broker, sim_device, fleet=fleet.name)
        self.ops = fleet

    def connection(self):
        return self.ops.connection("%s:%d" % (self.broker.host, self.broker.port))


def mpota(*args, **kw):
    return subprocess.run([sys.executable, "-m", "mpota"] + [str(a) for a in args], cwd=ROOT, capture_output=True,
                          text=True, timeout=kw.pop("timeout", 240), **kw)


def open_world(tmp_path, sim_device, devices, canaries, firmware=None):
    """A fleet folder, its broker and a running board per device, all on 1.0.0 (`firmware`:
    device -> the fw module of its 1.0.0 build, FW_HEALTHY by default)."""
    ops = Fleet.init(tmp_path / "fleet", "plant")
    for d in devices:
        ops.add(d, "canary" if d in canaries else "field")
    broker = LocalBroker.from_config(
        tmp_path / "broker",
        lambda port, extra: mosquitto_conf.write(ops, tmp_path / "broker" / "conf", port=port, bind="127.0.0.1",
                                                 extra=list(extra) + ["sys_interval 1"]),
        pki=ops.pki).start()
    ops.data["broker"] = "%s:%d" % (broker.host, broker.port)
    ops.save()
    boards = OperatedBoards(tmp_path, broker, sim_device, ops)
    for d in devices:
        creds = ops.dir / "devices" / d / "certs"
        cert = {"cert_der": (creds / "device.der").read_bytes(), "key_der": (creds / "device.key.der").read_bytes()}
        boards.board(d, group="canary" if d in canaries else "field", cert=cert, app="mqtt_app.py",
                     firmware=(firmware or {}).get(d, FW_HEALTHY)).start()
    boards.wait_state(lambda s: all((s.get(d) or {}).get("version") == "1.0.0" for d in devices), timeout=120)
    return ops, boards, broker


@pytest.fixture
def world(tmp_path, sim_device):
    ops, boards, broker = open_world(tmp_path, sim_device, DEVICES, CANARIES)
    yield ops, boards, broker
    broker.stop()


def start(ops, boards, name, version, fw, counter):
    blob, image = boards.signer.release(version, {"fw": fw}, counter=counter, size=IMAGE)
    (boards.tmp / (name + ".sig")).write_bytes(blob)
    (boards.tmp / (name + ".bin")).write_bytes(image)
    out = mpota("rollout", "start", boards.tmp / (name + ".sig"), boards.tmp / (name + ".bin"), "--id", name,
                "--canary-group", "canary", "--waves", "50,100", "--soak", "1", "--timeout", "120",
                "--abort-percent", "50", "--min-executed", "3", "--fleet-dir", ops.dir)
    assert out.returncode == 0, out.stderr
    return release_id(blob)


def plan(ops, name):
    return json.loads((ops.dir / "rollouts" / (name + ".json")).read_text())


def sys_counters(boards):
    with boards.connection() as conn:
        found = conn.retained(["$SYS/broker/bytes/sent", "$SYS/broker/bytes/received",
                               "$SYS/broker/messages/sent", "$SYS/broker/messages/received"], settle=1.5)
    return {t.rsplit("/", 2)[-2] + "_" + t.rsplit("/", 1)[-1]: int(v) for t, v in found.items()}


PUBLISH_LINE = re.compile(r"(Sending PUBLISH to|Received PUBLISH from) (\S+) \(.*'([^']*)', \.\.\. \((\d+) bytes\)\)$")


def device_traffic(log):
    """From the broker's log: PUBLISH messages and payload bytes exchanged with devices, by kind."""
    out = {}
    for match in filter(None, map(PUBLISH_LINE.search, log.splitlines())):
        direction, client, topic, size = match.groups()
        if client not in DEVICES:
            continue
        if direction.startswith("Sending"):
            key = "to_device " + ("chunk" if "/fw/" in topic else topic.split("/")[1])
        else:
            key = "from_device status/" + topic.rsplit("/", 1)[-1]
        count, total = out.get(key, (0, 0))
        out[key] = (count + 1, total + int(size))
    return out


def test_bad_release_halts_after_canaries_good_release_reaches_all_in_three_waves(world):
    ops, boards, broker = world
    audit = AuditLog(ops.dir)

    # --- a release whose health check fails: the canaries roll back, the rollout halts ---
    bad = start(ops, boards, "bad", "2.0.0", FW_UNHEALTHY, 2)
    out = mpota("rollout", "run", "bad", "--fleet-dir", ops.dir)
    assert out.returncode == 1, out.stdout + out.stderr  # halted: refused
    p = plan(ops, "bad")
    assert p["status"] == "halted" and p["wave"] == 0
    assert sorted(p["devices"]) == CANARIES
    assert all(p["devices"][d]["status"] == "rolled_back" for d in CANARIES)
    states = boards.wait_state(lambda s: all((s[d].get("reason") == "health_check_failed") for d in CANARIES))
    for d in DEVICES:
        assert states[d]["version"] == "1.0.0" and states[d]["state"] == "idle"
    for d in CANARIES:
        assert [b["version"] for b in boards.boards[d].boot_log()][:3] == ["1.0.0", "2.0.0", "1.0.0"]
        assert states[d]["release"] == bad and states[d]["rollout"] == "bad"
    for d in DEVICES[3:]:
        assert len(boards.boards[d].boot_log()) == 1 and states[d]["release"] is None  # untouched
    with boards.connection() as conn:
        pins = conn.retained(["ota/manifest/plant/#", "ota/rollout/plant/#"], settle=0.5)
    assert pins == {}  # the halt took the canaries' pins away; nobody else ever had one

    # The audit trail tells the story in order.
    story = [(e["actor"], e["action"], e["device"], e["outcome"]) for e in audit.entries(rollout="bad")]
    steps = [(a, act) for a, act, _, _ in story]
    first = {s: steps.index(s) for s in reversed(steps)}
    assert first[("publisher", "publish")] < first[("publisher", "rollout_start")] < first[("rollout", "wave_start")]
    pins_at = [i for i, s in enumerate(story) if s[1] == "pin"]
    rolled = [i for i, s in enumerate(story) if s[1] == "report" and s[3] == "rolled_back"]
    halt = steps.index(("rollout", "halt"))
    unpins = [i for i, s in enumerate(story) if s[1] == "unpin"]
    assert len(pins_at) == 3 and len(rolled) == 3 and len(unpins) == 3
    assert max(pins_at) < min(rolled) and max(rolled) < halt < min(unpins)
    assert sorted(story[i][0] for i in rolled) == CANARIES  # each reported by the device itself
    assert all(e["reason"] == "health_check_failed" for e in audit.entries(rollout="bad", action="report")
               if e["outcome"] == "rolled_back")
    assert ("rollout", "wave_start") not in steps[halt:]

    # --- a good release: three waves; the runner is killed in the second and started again;
    # one board is off all along and catches up when it returns ---
    away = boards.boards["dev-19"]
    away.power_cut()
    boards.wait_state(lambda s: (s.get("dev-19") or {}).get("online") is False)  # a busy broker may answer in part
    before = sys_counters(boards)
    log_mark = len(broker.log_text())
    good = start(ops, boards, "good", "3.0.0", FW_HEALTHY, 3)
    runner = subprocess.Popen([sys.executable, "-m", "mpota", "rollout", "run", "good", "--fleet-dir", str(ops.dir)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while plan(ops, "good")["wave"] < 1:
        assert runner.poll() is None and time.monotonic() < deadline, runner.stdout.read()
        time.sleep(0.05)
    runner.send_signal(signal.SIGKILL)
    runner.communicate()
    killed = plan(ops, "good")
    assert killed["status"] == "running" and killed["wave"] >= 1
    time.sleep(1)  # devices keep going while no runner listens; their retained states remember
    out = mpota("rollout", "run", "good", "--fleet-dir", ops.dir)
    assert out.returncode == 0, out.stdout + out.stderr
    p = plan(ops, "good")
    assert p["status"] == "succeeded" and p["wave"] == 2 and sorted(p["devices"]) == DEVICES
    assert p["devices"]["dev-19"]["status"] == "notified"  # off: it did not hold its wave up
    assert all(i["status"] == "succeeded" for d, i in p["devices"].items() if d != "dev-19")
    away.start()  # back: its retained pin is waiting
    boards.wait_state(lambda s: (s.get("dev-19") or {}).get("version") == "3.0.0" and s["dev-19"].get("state") == "idle")
    out = mpota("rollout", "run", "good", "--fleet-dir", ops.dir)  # folds in the late confirmation
    assert out.returncode == 0, out.stdout + out.stderr
    p = plan(ops, "good")
    assert all(i["status"] == "succeeded" for i in p["devices"].values())
    sizes = [sum(1 for i in p["devices"].values() if i["wave"] == w) for w in range(3)]
    assert sizes[0] == 3 and sizes[1] > 0 and sizes[2] > 0 and sum(sizes) == 20
    states = boards.wait_state(lambda s: all(s[d].get("version") == "3.0.0" for d in DEVICES))
    assert all(states[d]["release"] == good and states[d]["state"] == "idle" for d in DEVICES)
    after = sys_counters(boards)

    waves = [e for e in audit.entries(rollout="good") if e["action"] in ("wave_start", "wave_done", "complete")]
    assert [(e["action"], e["outcome"]) for e in waves] == [
        ("wave_start", "canary"), ("wave_done", "canary"), ("wave_start", "50%"), ("wave_done", "50%"),
        ("wave_start", "100%"), ("wave_done", "100%"), ("complete", "succeeded")]
    confirmed = [e for e in audit.entries(rollout="good", action="report") if e["outcome"] == "confirmed"]
    assert sorted(e["device"] for e in confirmed) == DEVICES  # killed or not, every confirmation is on record
    for w in (1, 2):  # a wave starts only after every device of the previous one confirmed
        members = [d for d, i in p["devices"].items() if i["wave"] == w - 1 and d != "dev-19"]
        start_at = waves[2 * w]["time"]
        assert all(max(e["time"] for e in confirmed if e["device"] == d) <= start_at for d in members)
    out = mpota("status", "--release", good, "--broker", "%s:%d" % (broker.host, broker.port), "--cafile",
                ops.dir / "pki" / "ca.crt", "--cert", ops.dir / "pki" / "publisher.crt", "--key",
                ops.dir / "pki" / "publisher.key")
    assert out.returncode == 0, out.stderr
    assert "installed 20 of 20" in out.stdout

    # Broker traffic for this update, per device (SCALING.md quotes these figures).
    per = {k: (after[k] - before[k]) / len(DEVICES) for k in before}
    kinds = {k: [round(c / len(DEVICES), 1), round(b / len(DEVICES))]
             for k, (c, b) in device_traffic(broker.log_text()[log_mark:]).items()}
    print("\nbroker traffic per device per update (%d-byte image, 4 KiB chunks): %s\nby kind [messages, payload "
          "bytes]: %s" % (IMAGE, json.dumps(per, sort_keys=True), json.dumps(kinds, sort_keys=True)))
    assert kinds["to_device chunk"][0] >= IMAGE // 4096
    assert IMAGE <= per["bytes_sent"] < 3 * IMAGE
    assert not [line for line in broker.dropped_lines() if "dropped" in line.lower()]


def test_rollout_pins_carry_the_delta_and_boards_running_its_base_take_it(tmp_path, sim_device):
    """`rollout start --delta`: every pin is the full manifest followed by the delta manifest;
    the canary and a field board run the delta's base and patch, a board running another 1.0.0
    build takes the full image; the rollout records which each took."""
    other = FW_HEALTHY + "\n# another build of 1.0.0\n"
    ops, boards, broker = open_world(tmp_path, sim_device, ["dev-a", "dev-b", "dev-c"], ["dev-a"],
                                     firmware={"dev-c": other})
    try:
        base = boards.signer.release("1.0.0", {"fw": FW_HEALTHY})[1]  # what dev-a and dev-b run
        blob, image = boards.signer.release("2.0.0", {"fw": FW_HEALTHY}, counter=2, size=IMAGE)
        delta = boards.signer.release_of(image, version="2.0.0", counter=2, encoding="delta", base=base)[0]
        files = {"full.sig": blob, "full.bin": image, "delta.sig": delta, "base.bin": base}
        for name, data in files.items():
            (tmp_path / name).write_bytes(data)
        out = mpota("rollout", "start", tmp_path / "full.sig", tmp_path / "full.bin", "--delta", tmp_path / "delta.sig",
                    "--delta-from", tmp_path / "base.bin", "--id", "patch", "--canary", "dev-a", "--waves", "100",
                    "--soak", "0", "--timeout", "120", "--quiet", "--fleet-dir", ops.dir)
        assert out.returncode == 0, out.stderr
        assert "delta %s" % release_id(delta) in out.stdout
        with boards.connection() as conn:  # a device-level pin is the whole message, delta included
            assert conn.retained(["ota/rollout/plant/device/dev-a"], settle=0.3) == {}  # no wave started yet
        out = mpota("rollout", "run", "patch", "--quiet", "--fleet-dir", ops.dir)
        assert out.returncode == 0, out.stdout + out.stderr
        p = plan(ops, "patch")
        assert p["status"] == "succeeded" and p["delta"] == release_id(delta)
        assert {d: (i["status"], i.get("encoding")) for d, i in p["devices"].items()} == {
            "dev-a": ("succeeded", "delta"), "dev-b": ("succeeded", "delta"), "dev-c": ("succeeded", "raw")}
        assert "taken: delta 2, raw 1" in out.stdout
        with boards.connection() as conn:
            pins = conn.retained(["ota/manifest/plant/device/%s" % d for d in ("dev-a", "dev-b", "dev-c")], settle=0.5)
        assert set(pins.values()) == {blob + delta}
        states = boards.wait_state(lambda s: all(s[d].get("version") == "2.0.0" for d in ("dev-a", "dev-b", "dev-c")))
        assert {d: states[d]["release"] for d in states} == {d: release_id(blob) for d in states}
        for d in ("dev-a", "dev-b", "dev-c"):
            assert boards.boards[d].read_partition("ota_1")[:len(image)] == image
    finally:
        broker.stop()
