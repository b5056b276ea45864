"""What this device has installed and refused, kept across reboots and firmware changes.

`counter` is the anti-downgrade floor: the security counter of the last confirmed release.
`failed` remembers releases that rolled back, so a retained bad release is not tried forever.

The record is kept in two copies, each with a sequence number, and every save writes both in
turn: a power cut can spoil only the copy being written while the other holds the old or the new
floor, and a copy damaged later is covered by its twin. The floor is the highest counter among
the copies that read back whole and well-formed, and a save writes what `load()` gave (never
lower). When copies exist but none can be read, `load()` raises `StateError("bad_history")` and
every update is refused: the device fails closed rather than take a floor of 0."""
from ota import store
from ota.errors import StateError

# Both copies, then the single copy of earlier versions: read and counted, removed on a save.
_NAMES = ("history.0", "history.1", "history")
_MAX_FAILED = 4
_told = [False]  # an unreadable copy is reported once per boot, not at every offer


def _valid(h):
    return (type(h) is dict and store.is_int(h.get("seq", 0), 0, 0x7FFFFFFF)
            and store.is_int(h.get("counter"), 0, 0xFFFFFFFF)
            and (h.get("release") is None or store.is_release(h["release"]))
            and type(h.get("failed")) is list and len(h["failed"]) <= _MAX_FAILED
            and all(store.is_release(r) for r in h["failed"]))


def load():
    """{"counter", "release", "failed", "seq"}; raises StateError when no copy can be read."""
    good = []
    seen = False
    for name in _NAMES:
        if store.present(name):
            seen = True
            data = store.read(name)
            h = store.decode_json(data, _valid) if data is not None else None
            if h is not None:
                good.append(h)
            elif not _told[0]:
                _told[0] = True
                store.report(name, "bad_history")
    if not good:
        if seen:
            raise StateError("bad_history", "no copy of the anti-downgrade floor can be read")
        return {"seq": 0, "counter": 0, "release": None, "failed": []}
    newest = max(good, key=lambda h: h.get("seq", 0))
    return {"seq": newest.get("seq", 0), "counter": max(h["counter"] for h in good),
            "release": newest.get("release"), "failed": newest["failed"]}


def save(history):
    """Write `history` (as `load()` gave it, then changed) to both copies in turn."""
    history["seq"] = history.get("seq", 0) + 1
    for name in _NAMES[:2]:
        store.write_json(name, history)
    store.remove(_NAMES[2])  # its counter is in the copies just written


def confirmed(release, counter):
    try:
        history = load()
    except StateError:
        # No readable floor, yet this release passed the floor check when it was offered: its
        # counter is a floor that cannot be too low.
        history = {"counter": counter, "release": None, "failed": []}
    history["release"] = release
    history["counter"] = max(history["counter"], counter)
    if release in history["failed"]:
        history["failed"].remove(release)
    save(history)


def failed(release):
    try:
        history = load()
    except StateError:
        return  # reported already; writing a guess could lower the floor
    if release and release not in history["failed"]:
        history["failed"] = (history["failed"] + [release])[-_MAX_FAILED:]
        save(history)
