"""Freshness (docs/FORMAT.md section 5) under the MicroPython unix port: timestamp records that
are replayed, copied from another level, naming another release, stale, or signed by a key
without the timestamp role are refused; time comes from the records when there is no clock and
never goes back across a reboot."""
import json

import pytest

import mpunix
from mpota import signing

T = 1_800_000_000
SCRIPT = """
import sys, json
from binascii import unhexlify
from ota import trust
from ota import events
from ota.freshness import Freshness
from ota.errors import OTAError
out = []
events.listen(lambda kind, fields: out.append([kind, fields]))
keys = trust.load(sys.argv[1])
clock = [None]
def fresh():
    return Freshness(keys, "plant", "canary", "dev-1", clock=lambda: clock[0])
f = fresh()
for line in open(sys.argv[2]):
    c = json.loads(line)
    if c.get("reboot"):
        f = fresh()
        continue
    if "watch" in c:
        clock[0] = c["watch"]
        f.watch()
        continue
    clock[0] = c["clock"]
    try:
        out.append(["ok", f.check(unhexlify(c["rec"]), unhexlify(c["blob"]))])
    except OTAError as e:
        out.append([e.reason])
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("fresh")
    release, stamp = signing.generate_key(), signing.generate_key()
    signing.write_trust_file([release.public_key(), stamp.public_key()], d / "trust.bin",
                             roles=[signing.ROLE_RELEASE | signing.ROLE_TRUST, signing.ROLE_TIMESTAMP])
    return d, release, stamp


def manifest(key, counter, version):
    tbs = signing.build_manifest(b"x" * 3000, board="esp32-generic", version=version, counter=counter,
                                 chunk_size=1024, key_id=key.public_key())
    return signing.sign(tbs, key)


def test_timestamp_record_rules(keys, tmp_path):
    d, release, stamp = keys
    a, b = manifest(release, 3, "3.0"), manifest(release, 4, "4.0")
    rid = signing.manifest_id

    def rec(blob=a, level="fleet", name=None, issued=T, expires=T + 3600, key=stamp, counter=None, release_id=None):
        return signing.build_timestamp(level=level, fleet="plant", name=name, release=release_id or rid(blob),
                                       counter=3 if counter is None else counter, issued=issued, expires=expires,
                                       private_key=key)

    bad_sig = bytearray(rec())
    bad_sig[-3] ^= 1
    cases = [
        (rec(), a, T + 10),  # ok: the device's time is the clock's
        (rec(), a, T + 10),  # the same record again: a re-delivery
        {"watch": T + 3599},  # still fresh: nothing to say
        {"watch": T + 3600},  # the publisher stopped vouching: reported once
        {"watch": T + 3700},
        (rec(issued=T - 100), a, T + 10),  # older than one already seen: replayed
        (rec(level="device", name="dev-2"), a, T + 10),  # another device's record
        (rec(level="group", name="other"), a, T + 10),  # another group's
        (rec(level="device", name="dev-1", release_id=rid(b)), a, T + 10),  # names another release
        (rec(level="device", name="dev-1", counter=99), a, T + 10),  # the right id, another counter
        (rec(level="device", name="dev-1", issued=T + 5), a, T + 4000),  # expired at T + 3600
        (rec(key=release), a, T + 10),  # a release key cannot vouch for freshness
        (bytes(bad_sig), a, T + 10),
        (rec()[:-1], a, T + 10),
        (b"", a, T + 10),  # freshness required, no record
        {"reboot": True},
        (rec(issued=T - 100), a, None),  # still replayed after a reboot: the newest issued is stored
        (rec(level="group", name="canary", issued=T + 50), a, None),  # no clock: time from the records
        (rec(level="device", name="dev-1", issued=T + 1, expires=T + 20), a, None),  # expired by that time
    ]
    rows = []
    for case in cases:
        if isinstance(case, dict):  # a reboot, or time passing
            rows.append(json.dumps(case))
        else:
            r, blob, clock = case
            rows.append(json.dumps({"rec": r.hex(), "blob": blob.hex(), "clock": clock}))
    (tmp_path / "cases").write_text("\n".join(rows) + "\n")
    out = json.loads(mpunix.run(SCRIPT, args=[str(d / "trust.bin"), str(tmp_path / "cases")], cwd=tmp_path).stdout)
    assert out == [
        ["ok", T + 10], ["ok", T + 10], ["stale", {"level": "fleet", "expired": T + 3600}], ["replayed"], ["wrong_level"], ["wrong_level"], ["mismatch"], ["mismatch"],
        ["stale"], ["unknown_key"], ["bad_signature"], ["bad_format"], ["no_timestamp"],
        ["replayed"], ["ok", T + 50], ["stale"],
    ]


def test_host_refuses_records_it_could_not_defend():
    key = signing.generate_key()
    for kw in ({"expires": T}, {"expires": T + 32 * 86400}, {"level": "device"}, {"level": "fleet", "name": "x"},
               {"level": "region"}):
        args = dict(level="fleet", fleet="plant", name=None, release="00" * 8, counter=1, issued=T, expires=T + 60,
                    private_key=key)
        args.update(kw)
        with pytest.raises(signing.FormatError):
            signing.build_timestamp(**args)
    with pytest.raises(signing.FormatError):
        signing.role_mask(["timestamp", "release"])


RESUME = """
import sys, json
from binascii import unhexlify
from ota import trust, events
from ota.freshness import Freshness
from ota.updater import Updater
resumed = []
events.listen(lambda kind, fields: kind == "offered" and resumed.append(fields["resumed"]))
msgs = json.loads(open(sys.argv[1]).read())
def boot():
    keys = trust.load()
    fresh = Freshness(keys, "plant", None, "dev-1")
    return Updater(keys, "esp32-generic", clock=fresh.now, fresh=fresh)
u = boot()
u.offer(unhexlify(msgs["first"]))
while u.missing(1)[0] >= 80:  # the table: its index, then its pages
    k = u.missing(1)[0]
    u.write_chunk(k, unhexlify(msgs["chunks"][k]))
for k in range(70):  # the progress is saved once 64 KiB are in
    u.write_chunk(k, unhexlify(msgs["chunks"][k]))
u = boot()  # a reboot; meanwhile the publisher refreshed the record
u.offer(unhexlify(msgs["refreshed"]))
print(json.dumps(resumed))
"""


def test_a_refreshed_record_does_not_restart_a_download(keys, sim_snippet, tmp_path):
    d, release, stamp = keys
    now = int(__import__("time").time())
    payload = bytes(range(256)) * 320  # 80 chunks of 1 KiB
    blob = signing.sign(signing.build_manifest(payload, board="esp32-generic", version="2", counter=2, chunk_size=1024,
                                               key_id=release.public_key()), release)
    fields = signing.parse_blob(blob)[2]

    def record(issued):
        return signing.build_timestamp(level="fleet", fleet="plant", release=fields["id"], counter=2, issued=issued,
                                       expires=issued + 3600, private_key=stamp)

    (tmp_path / ".ota").mkdir()
    (tmp_path / ".ota" / "trust.bin").write_bytes((d / "trust.bin").read_bytes())
    (tmp_path / "msgs").write_text(json.dumps({
        "first": (blob + record(now - 60)).hex(), "refreshed": (blob + record(now)).hex(),
        "chunks": [m.hex() for m in signing.chunk_messages(fields, payload)]}))
    out = json.loads(sim_snippet(RESUME, args=[str(tmp_path / "msgs")], heapsize="1M").stdout)
    assert out[0] == 0 and out[1] >= 64  # the table and 64 chunks were saved; none fetched again
