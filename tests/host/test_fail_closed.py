"""Damaged state and settings fail closed, under the unix port with the simulated board: a torn or
corrupted history never lowers the anti-downgrade floor; state files whose CRC is right but whose
content is wrong give typed errors or a reported fresh start, never a wedged `offer()`; damaged
`ota_config.json` files never stop the service; a MemoryError never ends it, and is never blamed on a release or reported as a refusal."""
import json
import random

import pytest

from mpunix import LIB, SIM_MODULES
from pipeline_env import new_signer
from releases import release_id

PRELUDE = """
import json
from ota import events, history, store
from ota.errors import OTAError
seen = []
events.listen(lambda kind, fields: seen.append([kind, fields.get("error"), fields.get("file"), fields.get("reason")]))

def raw(name, data):
    store._ensure_dir()
    with open(store.path(name), "wb") as f:
        f.write(data)

def outcome(fn):
    try:
        return ["ok", fn()]
    except OTAError as exc:
        return ["typed", exc.reason]
    except Exception as exc:
        return ["untyped", repr(exc)]
"""


@pytest.fixture
def run(sim_snippet):
    def go(code):
        out = sim_snippet(PRELUDE + code, heapsize="1M", path=(SIM_MODULES, LIB)).stdout
        return json.loads(out.strip().splitlines()[-1])
    return go


def _trusted(tmp_path):
    """A signer whose trust file the board in `tmp_path` holds."""
    signer = new_signer(tmp_path / "keys")
    (tmp_path / ".ota").mkdir(exist_ok=True)
    (tmp_path / ".ota" / "trust.bin").write_bytes(signer.trust.read_bytes())
    return signer


def _staged_release(tmp_path, counter):
    """A signed release's manifest blob, also left in `m.bin` for the board to offer."""
    blob, _ = _trusted(tmp_path).release("2.0.0", {"fw": "x = 1\n"}, counter=counter, size=16 * 1024)
    (tmp_path / "m.bin").write_bytes(blob)
    return blob


# Each damage leaves one history copy unusable: torn, flipped, or whole (CRC right) but wrong.
DAMAGES = """
DAMAGES = [
    lambda n: raw(n, b""),
    lambda n: raw(n, b'{"seq": 3, "counter": 7'),
    lambda n: raw(n, open(store.path(n), "rb").read()[:-1] + b"\\x00"),
    lambda n: store.write(n, b"not json"),
    lambda n: store.write(n, b"[7]"),
    lambda n: store.write(n, b'{"seq": 9, "counter": "99", "release": null, "failed": []}'),
    lambda n: store.write(n, b'{"seq": 9, "counter": 0, "release": null, "failed": []}'.replace(b"0,", b"-1,")),
    lambda n: store.write(n, b'{"seq": 9, "counter": true, "release": null, "failed": []}'),
    lambda n: store.write(n, b'{"seq": 9, "counter": 1, "release": 5, "failed": []}'),
    lambda n: store.write(n, b'{"seq": 9, "counter": 1, "release": null, "failed": "x"}'),
    lambda n: store.write(n, b'{"seq": 9, "counter": 1, "release": null, "failed": [1, 2, 3, 4, 5]}'),
    lambda n: store.write(n, b'{"seq": "9", "counter": 1, "release": null, "failed": []}'),
]
"""


def test_a_damaged_history_copy_never_lowers_the_floor(run):
    out = run(DAMAGES + """
results = []
for i, damage in enumerate(DAMAGES):
    for name in ("history.0", "history.1"):
        for n in ("history.0", "history.1", "history"):
            store.remove(n)
        history.confirmed("aa" * 8, 5)
        history.confirmed("bb" * 8, 7)
        damage(name)
        results.append(outcome(lambda: history.load()["counter"]))
        history.confirmed("cc" * 8, 3)  # a later save repairs the damaged copy, floor kept
        results.append(outcome(lambda: history.load()["counter"]))
print(json.dumps([results, len([s for s in seen if s[0] == "fault" and s[1] == "bad_history"])]))
""")
    results, reported = out
    assert results == [["ok", 7]] * len(results)
    assert reported == 1  # a damaged copy is reported once per boot, not at every load


def test_no_readable_history_copy_refuses_every_update_with_a_typed_error(run, tmp_path):
    _staged_release(tmp_path, 9)
    out = run(DAMAGES + """
from ota import trust
from ota.updater import Updater
blob = open("m.bin", "rb").read()
results = []
for damage in DAMAGES:
    for n in ("history.0", "history.1", "history"):
        store.remove(n)
    history.confirmed("aa" * 8, 12)
    damage("history.0")
    damage("history.1")
    u = Updater(trust.load(), "esp32-generic")
    results.append([outcome(history.load), outcome(lambda: u.offer(blob)), outcome(lambda: u.offer(blob))])
# a trial that was already running when the copies broke still confirms and writes a new floor
history.confirmed("dd" * 8, 12)
results.append(outcome(lambda: history.load()["counter"]))
history.failed("ee" * 8)
print(json.dumps([results, seen[-6:]]))
""")
    results, seen = out
    assert results[:-1] == [[["typed", "bad_history"]] * 3] * (len(results) - 1)
    assert results[-1] == ["ok", 12]
    assert ["rejected", None, None, "bad_history"] in seen


def test_a_legacy_single_history_file_keeps_its_floor(run):
    out = run("""
store.write_json("history", {"counter": 9, "release": "aa" * 8, "failed": []})
first = history.load()["counter"]
history.confirmed("bb" * 8, 3)
print(json.dumps([first, history.load()["counter"], store.present("history")]))
""")
    assert out == [9, 9, False]


def test_a_progress_record_with_a_right_crc_and_wrong_content_never_wedges_offer(run, tmp_path):
    blob = _staged_release(tmp_path, 3)
    rid = release_id(blob)
    out = run("""
import struct
from ota import trust
from ota.progress import Progress
from ota.updater import Updater
blob = open("m.bin", "rb").read()
rid = bytes.fromhex(%r)
head = lambda release, counter, chunks, sectors: struct.pack("<4s8sIHH", b"OTP1", release, counter, chunks, sectors)
RECORDS = [
    head(rid, 3, 0, 0),                                  # no chunks
    head(rid, 3, 4, 4) + b"\\x00",                       # wrong length
    b"OTP2" + head(rid, 3, 4, 4)[4:] + b"\\x00\\x00",    # wrong magic
    head(b"\\x11" * 8, 0xFFFFFFFF, 4, 4) + b"\\x0f\\x0f",  # another, "newer" release, no manifest
    head(rid, 3, 9, 9) + b"\\xff\\xff\\xff\\x01",        # this release, the wrong shape
    head(rid, 3, 4, 4) + b"\\x0f",                       # too short
]
first = Updater(trust.load(), "esp32-generic")
first.offer(blob)
fresh = [first.progress.chunk_count, 0]  # the shape a fresh download of this release has
results = []
for record in RECORDS:
    store.write("progress", record)
    store.write("manifest", blob)
    u = Updater(trust.load(), "esp32-generic")
    first = outcome(lambda: u.offer(blob).id)
    results.append([first, u.progress and [u.progress.chunk_count, u.progress.count]])
print(json.dumps([fresh, results, [s for s in seen if s[0] == "fault"]]))
""" % rid)
    fresh, results, faults = out
    assert all(r[0] == ["ok", rid] for r in results), results
    assert all(r[1] == fresh for r in results), results  # a fresh download of the right shape
    assert sum(f[1] == "bad_progress" for f in faults) == 4  # the malformed ones were reported


def test_a_pending_record_with_wrong_content_is_reported_not_raised_at_boot(run):
    out = run("""
from ota import trial
results = []
for record in (b"[]", b'{"release": 5}', b'{"release": "aaaaaaaaaaaaaaaa", "slot": "0", "seq": 1, "counter": 1, "version": "2"}',
               b"\\xff\\xfe", b'{"release": "aaaaaaaaaaaaaaaa", "slot": 1, "seq": 1, "counter": -1, "version": "2"}'):
    store.write(store.PENDING, record)
    results.append(outcome(trial.on_boot))
print(json.dumps([results, store.present(store.PENDING), [s for s in seen if s[0] == "fault"]]))
""")
    results, left, faults = out
    assert results == [["ok", False]] * 5
    assert not left and [f[1] for f in faults] == ["bad_state"] * 5


def mutate(rng, text):
    """One damaged copy of a config file: bytes flipped, cut or repeated, or a value retyped."""
    data = bytearray(text.encode())
    kind = rng.randrange(4)
    if kind == 0:
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == 1:
        del data[rng.randrange(1, len(data)):]
    elif kind == 2:
        at = rng.randrange(len(data))
        data[at:at] = data[rng.randrange(len(data)):][:rng.randint(1, 20)]
    else:
        cfg = json.loads(text)
        key = rng.choice(sorted(cfg))
        cfg[key] = rng.choice([None, True, -1, 2 ** 40, "", "a/b", [], {}, "x" * 300, 3.5])
        if rng.random() < 0.5 and isinstance(cfg.get("broker"), dict):
            cfg["broker"][rng.choice(sorted(cfg["broker"]))] = rng.choice([None, "1", 70000, False, []])
        data = bytearray(json.dumps(cfg).encode())
    return bytes(data)


GOOD_CONFIG = {"device_id": "dev-7", "board": "esp32-generic", "fleet": "plant", "group": "north", "root": "ota",
               "broker": {"host": "mqtt.example.com", "port": 8883, "tls": True, "ca": "certs/ca.der",
                          "cert": "certs/device.der", "key": "certs/device.key.der", "server_hostname": None,
                          "user": None, "password": None, "keepalive": 30},
               "install": "window 2 4", "wdt_ms": 8000, "confirm_within_ms": 300000, "wifi": None}


def test_two_hundred_damaged_configs_never_stop_the_service_and_keep_the_last_good_broker(run, tmp_path):
    rng = random.Random(12)
    good = json.dumps(GOOD_CONFIG)
    for i in range(200):
        (tmp_path / ("cfg%d.json" % i)).write_bytes(mutate(rng, good))
    (tmp_path / "good.json").write_text(good)
    out = run("""
from ota import config
from ota.service import _permission
results = {"untyped": 0, "typed": 0, "ok": 0, "invalid": 0, "fallback_host": 0}
for i in range(200):
    config.load("good.json")  # the last good settings, kept by the device
    r = outcome(lambda: config.load("cfg%d.json" % i))
    results[r[0]] += 1
    if r[0] == "ok":
        cfg = r[1]
        if outcome(lambda: config.check(cfg))[0] != "ok" or outcome(lambda: _permission(cfg["install"]))[0] != "ok":
            results["invalid"] += 1
        results["fallback_host"] += cfg["broker"]["host"] == "mqtt.example.com"
results["reported"] = len([s for s in seen if s[0] == "fault" and s[1] == "bad_config"])
print(json.dumps(results))
""")
    print("damaged configs:", json.dumps(out, sort_keys=True))
    assert out["untyped"] == 0 and out["typed"] == 0 and out["ok"] == 200
    assert out["invalid"] == 0  # every setting the service gets passed its check
    assert out["reported"] >= 150  # nearly every damage is reported (a few flips are harmless)
    assert out["fallback_host"] >= 190  # the broker stays reachable unless the damage hit its name


def test_config_check_names_the_bad_key(run):
    out = run("""
from ota import config
print(json.dumps([outcome(lambda: config.check(c)) for c in (
    [], {"fleet": "a/b"}, {"broker": {"host": "h", "tls": None}}, {"wifi": []}, {"wifi": None, "later": 1},
    {"wdt_ms": True}, {"install": "window 1 25"})]))
""")
    assert out == [["typed", "bad_config"]] * 4 + [["ok", None]] + [["typed", "bad_config"]] * 2


def test_memory_error_in_the_service_is_reported_and_polling_goes_on(run, tmp_path):
    _trusted(tmp_path)
    out = run("""
import ota.service
from ota.mqtt import MQTTClient

class Link(MQTTClient):
    # The real client, whose opening of the link runs out of memory twice (a real allocation
    # failure), then finds no broker.
    calls = 0
    def open(self, *args, **kwargs):
        Link.calls += 1
        if Link.calls <= 2:
            return bytearray(1 << 30)
        raise OSError(111)

ota.service._client = lambda cfg: Link("dev-1", "127.0.0.1", 1)  # the service's own client, not a lent one
service = ota.service.start()
rounds = 0
while Link.calls < 3 and rounds < 100:  # the transport's backoff spaces the attempts out
    service.poll(200)
    rounds += 1
print(json.dumps([Link.calls, [s for s in seen if s[0] == "fault"]]))
""")
    calls, faults = out
    assert calls >= 3  # polling went on after the MemoryErrors
    assert [f[1] for f in faults] == ["no_memory", "no_memory"]


def test_running_out_of_memory_while_checking_a_manifest_is_not_blamed_on_the_release(run, tmp_path):
    _staged_release(tmp_path, 9)
    out = run("""
from ota import manifest, trust
from ota.updater import Updater
blob = open("m.bin", "rb").read()
check = manifest.check

def hungry(*args):
    return bytearray(1 << 30)  # a real allocation failure in the middle of the check

manifest.check = hungry
u = Updater(trust.load(), "esp32-generic")
first = outcome(lambda: u.offer(blob))
manifest.check = check
second = outcome(lambda: u.offer(blob).counter)
print(json.dumps([first[0], "MemoryError" in first[1], second, seen, history.load()["failed"]]))
""")
    kind, memory, second, seen, failed = out
    assert (kind, memory) == ("untyped", True)  # the service catches it: fault no_memory, retried
    assert not [s for s in seen if s[0] == "rejected"]  # no status blames the release
    assert second == ["ok", 9] and failed == []  # the same manifest is taken once there is room


def test_a_lent_client_running_out_of_memory_is_not_reported_as_a_refusal(run):
    out = run("""
from ota.adapter import Lent

class Client:  # an umqtt.simple-style client whose calls run out of memory (a real allocation failure)
    sock = None
    def set_callback(self, fn):
        pass
    def connect(self):
        return bytearray(1 << 30)
    def subscribe(self, topic, qos=0):
        return bytearray(1 << 30)

lent = Lent(Client())
print(json.dumps([outcome(lent.connect), outcome(lambda: lent.subscribe("t"))]))
""")
    assert [(kind, "MemoryError" in what) for kind, what in out] == [("untyped", True)] * 2
