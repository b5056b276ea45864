"""Torn-write campaign: the power goes inside a flash page program or sector erase (otadata, the
update slot, or the LittleFS blocks of the state files), leaving that page half programmed or that
sector half erased as NOR flash does (boards/unix/modules/sim_flash.py, Tear). The board then
powers on and runs until idle. Outcomes that must never happen: a board that does not boot, a
firmware whose health check fails left confirmed, an anti-downgrade floor lowered (a release
with a smaller counter installs after a confirmed one).

Each cut is planned from a calibration run's trace of flash operations: a category is picked in
turn, then a random operation of that category in a random boot. On purpose, the first cuts of
each run land in the bootloader's otadata write of the trial boot with seeds that leave the
sequence number and CRC whole and the state word half programmed.

`make test`: a fixed-seed handful. OTA_SOAK=1 (`make soak`): 1000 cuts (OTA_TORN_CUTS)."""
import os
import random
import re
import shutil
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from pipeline_env import FW_HEALTHY, FW_UNHEALTHY, PipelineBoard, new_signer
from plugin_sim import SimDevice
import sim_flash

SOAK = os.environ.get("OTA_SOAK") == "1"
CUTS = int(os.environ.get("OTA_TORN_CUTS", 1000 if SOAK else 9))
CATEGORIES = ("otadata", "vfs", "ota_1")
WORKERS = 2
OPS = re.compile(r"^\[sim\] flash ops boot (\d+): (.*)$", re.M)
BAD = ("unbootable", "confirmed failing firmware", "failing firmware still running", "failing release retried without end",
       "lowered floor", "older release not refused", "update not finished")
CUT = re.compile(r"^\[sim\] halt reason=powercut (\w) (\S+) (\S+)( bootloader)?", re.M)


def op_runs(console):
    """{boot: [(partition, kind, first_op, count)]} from a traced run."""
    out = {}
    for boot, runs in OPS.findall(console):
        at, rows = 0, []
        for run in runs.split():
            label_kind, count = run.rsplit("*", 1)
            label, kind = label_kind.split(":")
            rows.append((label, kind, at, int(count)))
            at += int(count)
        out[int(boot)] = rows
    return out


def state_word_seeds(count):
    """Seeds whose tear of a 32-byte otadata entry program completes seq (word 0) and CRC (word 7)
    but only part of the state word (word 6): the half-programmed state the bootloader cannot see."""
    found, seed = [], 1
    while len(found) < count:
        mask = sim_flash.Tear(0, seed).mask(32)
        words = [mask[i:i + 4] for i in range(0, 32, 4)]
        if words[0] == b"\xff" * 4 and words[7] == b"\xff" * 4 and words[6] not in (b"\xff" * 4, b"\x00" * 4):
            found.append(seed)
        seed += 1
    return found


class Campaign:
    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.signer = new_signer(tmp_path)
        self.releases = {
            "healthy": self.signer.release("2.0.0", {"fw": FW_HEALTHY}, counter=2, size=32 * 1024),
            "unhealthy": self.signer.release("2.0.0", {"fw": FW_UNHEALTHY}, counter=2, size=32 * 1024),
        }
        self.older = self.signer.release("1.5.0", {"fw": FW_HEALTHY}, counter=1, size=32 * 1024)
        golden = self.board("golden")
        golden.device.run(timeout=60)  # first boot: filesystem set up, files moved onto it
        assert "Traceback" not in golden.device.console, golden.device.console
        self.golden = golden.device.flash.read_bytes()

    def board(self, name, scenario=None):
        def make(image, heapsize):
            return SimDevice(self.tmp / name, image, None, heapsize)

        board = PipelineBoard(make, self.signer, wdt_ms=1000, confirm_within_ms=3000)
        if scenario:
            shutil.rmtree(board.device.fs)  # the golden flash has all the files already
            board.device.fs.mkdir()
            board.device.flash.write_bytes(self.golden)
            board.stage(*self.releases[scenario])
        return board

    def calibrate(self, scenario):
        board = self.board("cal-" + scenario, scenario)
        board.device.run(timeout=60, env={"OTASIM_TRACE_FLASH": "1"})
        return op_runs(board.device.console)

    def cut(self, n, scenario, boot, op, seed):
        board = self.board("cut%d" % n, scenario)
        device = board.device
        try:
            device.run(timeout=60, env={"OTASIM_TEAR_PLAN": "%d %d %d" % (boot, op, seed)})
            landed = CUT.search(device.console)
            if not landed:
                return None  # this run made fewer operations than the calibration run
            where = (landed[2], landed[1], "bootloader" if landed[4] else "device")
            seen = len(device.console)
            device.run(timeout=60)
            outcome = self.judge(board, scenario, seen)
            if outcome in BAD:  # keep what the board printed, to replay this cut
                (self.tmp / ("cut%d.log" % n)).write_text(device.console)
            return where, outcome
        finally:
            shutil.rmtree(device.root, ignore_errors=True)

    def judge(self, board, scenario, seen):
        """What the board did after the cut."""
        device = board.device
        after = device.console[seen:]
        boots = [b for b in device.boot_log() if "boot %d " % b["n"] in after]
        if not boots or "no-bootable-app" in after or "filesystem corrupted" in after:
            return "unbootable"
        final = boots[-1]["version"]
        if scenario == "unhealthy":
            trials = [b for b in boots if b["version"] == "2.0.0"]
            confirmed = [f for k, f in board.events(after) if k == "confirmed" and f.get("target", f.get("version")) == "2.0.0"]
            if confirmed or (final == "2.0.0" and boots[-1]["state"] == "VALID"):
                return "confirmed failing firmware"
            if len(trials) > 2:  # a failed release is not installed again and again
                return "failing release retried without end"
            return "failing firmware still running" if final == "2.0.0" else "rolled back"
        if final != "2.0.0":
            return "update not finished"
        seen = len(device.console)
        board.stage(*self.older)
        device.run(timeout=60)
        if device.boot_log()[-1]["version"] != "2.0.0":
            return "lowered floor"
        return "updated" if "REFUSED downgrade" in device.console[seen:] else "older release not refused"


def plan(traces, rng, count, seeds):
    """(scenario, boot, op, seed) for `count` cuts: targeted trial-boot otadata cuts first."""
    cuts = []
    for seed in seeds:  # the bootloader's PENDING_VERIFY write on the trial boot (boot 2)
        scenario = "unhealthy"
        program = [r for r in traces[scenario].get(2, []) if r[0] == "otadata" and r[1] == "p"][0]
        cuts.append((scenario, 2, program[2], seed))
    i = 0
    while len(cuts) < count:
        scenario = ("healthy", "unhealthy")[i % 2]
        category = CATEGORIES[i % len(CATEGORIES)]
        i += 1
        ops = [(boot, r[2] + k) for boot, rows in traces[scenario].items() for r in rows if r[0] == category
               for k in range(r[3])]
        if ops:
            boot, op = rng.choice(ops)
            cuts.append((scenario, boot, op, rng.randrange(1, 1 << 30)))
    return cuts[:count]


def test_torn_flash_writes_never_brick_downgrade_or_keep_a_failing_firmware(tmp_path, capsys):
    campaign = Campaign(tmp_path)
    traces = {s: campaign.calibrate(s) for s in campaign.releases}
    for scenario, boots in traces.items():  # the trace covers the whole update
        assert {r[0] for rows in boots.values() for r in rows} >= set(CATEGORIES), (scenario, boots)
    rng = random.Random(20261201)
    targeted = 3 if not SOAK else 30
    planned = plan(traces, rng, CUTS, state_word_seeds(targeted))

    results = []
    with ThreadPoolExecutor(WORKERS) as pool:
        for done in pool.map(lambda job: campaign.cut(job[0], *job[1]), enumerate(planned)):
            results.append(done)
    landed = [r for r in results if r is not None]
    bad_cuts = [(n, job, r) for n, (job, r) in enumerate(zip(planned, results)) if r and r[1] in BAD]
    places = Counter("%s %s (%s)" % where for where, _ in landed)
    outcomes = Counter(outcome for _, outcome in landed)
    with capsys.disabled():
        print("\ntorn writes: %d planned, %d landed inside a flash operation" % (len(planned), len(landed)))
        print("  where: " + ", ".join("%s %d" % kv for kv in sorted(places.items())))
        print("  outcomes: " + ", ".join("%s %d" % kv for kv in sorted(outcomes.items())))
        for n, (scenario, boot, op, seed), (where, outcome) in bad_cuts:
            print("  %s: %s release, OTASIM_TEAR_PLAN='%d %d %d', cut in %s; console in %s"
                  % (outcome, scenario, boot, op, seed, " ".join(where), tmp_path / ("cut%d.log" % n)))
    assert len(landed) >= len(planned) * 3 // 4
    assert {where[0] for where, _ in landed} >= set(CATEGORIES)
    assert not bad_cuts, outcomes
