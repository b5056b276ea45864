"""The device's side of rollouts: the transport reads the retained rollout note beside its
winning manifest level and names that rollout in its events and retained state, only for the
release the note is about; plain blobs without a note still work."""
import json
import time

import mpunix
from plugin_broker import make_release
from mpota.broker import Connection
from mpota.signing import manifest_id

IMAGE = bytes(range(256)) * 32  # 8 KiB: two chunks


def collect(conn, seconds):
    out, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            msg = conn.messages.get(timeout=0.1)
        except Exception:
            continue
        out.append((msg.topic, json.loads(msg.payload)))
    return out


def test_events_and_state_name_the_rollout_of_the_release_they_are_about(mosquitto, ota_device, tmp_path):
    mq = mosquitto()
    blob = make_release(IMAGE)
    rid = manifest_id(blob)
    notes = {"dev-a": json.dumps({"rollout": "r7", "release": rid}),  # about this release
             "dev-b": json.dumps({"rollout": "r6", "release": "00" * 8}),  # about another one
             "dev-c": b"\xff not json",  # unreadable: ignored
             "dev-d": None}  # a plain blob, no note at all
    with Connection(mq.host, mq.port) as conn:
        conn.wait([conn.publish("ota/fw/%s/%d" % (rid, i), IMAGE[i * 4096:(i + 1) * 4096]) for i in range(2)])
        for device, note in notes.items():
            if note is not None:
                conn.wait([conn.publish("ota/rollout/plant/device/" + device, note)])
            conn.wait([conn.publish("ota/manifest/plant/device/" + device, blob)])
        conn.client.subscribe("ota/status/+/event", 1)
        time.sleep(0.3)
        runs = [ota_device({"port": mq.port, "device": d, "fleet": "plant", "data": str(tmp_path / d)}) for d in notes]
        for run in runs:
            code, out, err = run.wait(60)
            assert code == 0 and "COMPLETE " + rid in out, out + err
        events = collect(conn, 0.5)
        states = conn.retained(["ota/status/+/state"], settle=0.3)
    rollouts = {}
    for topic, event in events:
        rollouts.setdefault(topic.split("/")[2], set()).add(event.get("rollout", "missing"))
    assert rollouts == {"dev-a": {"r7"}, "dev-b": {None}, "dev-c": {None}, "dev-d": {None}}
    state = {t.split("/")[2]: json.loads(p) for t, p in states.items()}
    assert state["dev-a"]["rollout"] == "r7" and state["dev-a"]["release"] == rid
    assert state["dev-a"]["event"] == "downloading"
    assert all(state[d]["rollout"] is None for d in ("dev-b", "dev-c", "dev-d"))


def test_reports_keep_naming_the_rollout_after_its_note_is_withdrawn():
    """A halted or finished rollout clears its note with its pin; the device's later reports
    about the release it delivered (the rolled-back state after a failed trial, say) still name
    it, and a report about another release does not borrow it."""
    out = mpunix.run("""
from ota.transport import Transport
t = Transport(None, None, "dev-a", "plant")
t.blobs[0], t.notes[0] = b"pin", ("r7", "rel1")
print("pinned", t.rollout("rel1"), t.rollout("rel2"), t.rollout(None))
t.blobs[0] = t.notes[0] = None
print("withdrawn", t.rollout("rel1"), t.rollout("rel2"), t.rollout(None))
t.blobs[0], t.notes[0] = b"pin", ("r8", "rel2")
print("next", t.rollout("rel2"), t.rollout("rel1"))
""").stdout.split("\n")
    assert out[:3] == ["pinned r7 None r7", "withdrawn r7 None None", "next r8 None"]


def test_the_first_reports_of_a_boot_name_the_rollout_before_the_manifests_arrive():
    """After a reset (a failed trial rolled back, say) the notes come in before the manifests; a
    report sent between the two names the rollout its note gives for that release, so it still
    does once the runner, halting on that report, has withdrawn the pins before the manifests came."""
    out = mpunix.run("""
from ota.transport import Transport
t = Transport(None, None, "dev-a", "plant", group="canary")
t.notes[0], t.notes[1] = ("r1", "old"), ("r7", "rel1")
print("notes only", t.rollout("old"), t.rollout("rel2"), t.rollout(None), t.rollout("rel1"))
t.notes[0] = t.notes[1] = None
print("withdrawn", t.rollout("rel1"), t.rollout("rel2"))
""").stdout.split("\n")
    assert out[:2] == ["notes only r1 None None r7", "withdrawn r7 None"]
