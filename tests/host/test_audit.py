"""The audit trail: append-only JSON lines with the same keys on every record, filters by device,
release, rollout and time, a torn last line skipped, and `mpota audit`."""
import json
import multiprocessing

from mpota.audit import KEYS, AuditLog, parse_time
from mpota.cli import main
from mpota.fleet import Fleet


def _writer(folder, n):
    log = AuditLog(folder)
    for i in range(n):
        log.record("w", "tick", outcome=str(i), reason="x" * 300)


def test_records_are_appended_whole_and_keep_their_order(tmp_path):
    procs = [multiprocessing.Process(target=_writer, args=(tmp_path, 50)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines]  # no line was torn by another writer
    assert len(entries) == 150 and all(tuple(e) == KEYS for e in entries)


def test_filters_and_a_torn_last_line(tmp_path):
    log = AuditLog(tmp_path)
    t0 = parse_time("2026-01-01T00:00:00Z")
    log.record("publisher", "publish", release="aa11" * 4, at=t0)
    log.record("rollout", "pin", release="aa11" * 4, rollout="r1", device="d1", outcome="notified", at=t0 + 60)
    log.record("d1", "report", release="aa11" * 4, rollout="r1", device="d1", outcome="rolled_back",
               reason="watchdog", at=t0 + 120)
    log.record("rollout", "pin", release="bb22" * 4, rollout="r2", device="d2", at=t0 + 180)
    with open(tmp_path / "audit.jsonl", "a") as f:
        f.write('{"time": "2026-01-01T00:04:00.000Z", "actor": "rol')  # the writer was killed here
    assert [e["action"] for e in log.entries()] == ["publish", "pin", "report", "pin"]
    assert [e["outcome"] for e in log.entries(device="d1")] == ["notified", "rolled_back"]
    assert len(log.entries(release="aa11")) == 3 and len(log.entries(rollout="r2")) == 1
    assert [e["action"] for e in log.entries(since=t0 + 30, until=t0 + 150)] == ["pin", "report"]
    assert log.entries(actor="d1")[0]["reason"] == "watchdog"
    assert log.entries()[0]["time"] == "2026-01-01T00:00:00.000Z"


def test_audit_command(tmp_path, capsys):
    f = Fleet.init(tmp_path / "fleet", "plant")
    assert main(["fleet", "add", "d1", "--group", "g", "--fleet-dir", str(f.dir)]) == 0
    AuditLog(f.dir).record("d1", "report", release="cc33" * 4, rollout="r1", device="d1", outcome="confirmed")
    capsys.readouterr()
    assert main(["audit", "--device", "d1", "--fleet-dir", str(f.dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "device_add" in lines[0] and "outcome=confirmed" in lines[1]
    assert main(["audit", "--release", "cc33", "--json", "--since", "2000-01-01", "--fleet-dir", str(f.dir)]) == 0
    assert json.loads(capsys.readouterr().out)["outcome"] == "confirmed"
    assert main(["audit", "--until", "2000-01-01", "--fleet-dir", str(f.dir)]) == 0
    assert capsys.readouterr().out == ""
    assert main(["audit", "--since", "yesterday", "--fleet-dir", str(f.dir)]) == 2
