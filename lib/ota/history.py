"""What this device has installed and refused, kept across reboots and firmware changes.

`counter` is the anti-downgrade floor: the security counter of the last confirmed release.
`failed` remembers releases that rolled back, so a retained bad release is not tried forever.

The record is kept in two copies, each with a sequence number, and every save writes both in
turn: a power cut can spoil only the copy being written while the other holds the old or the new
floor, and a copy damaged later is covered by its twin. The floor is the highest counter among
the copies that read back whole and well-formed, and a save never writes a counter below it. When copies exist but none can be read, `load()` raises `StateError("bad_history")`
and every update is refused: the device fails closed rather than take a floor of 0."""
from ota import store
from ota.errors import StateError

_COPIES = ("history.0", "history.1")
_LEGACY = "history"  # the single copy of earlier versions: read, counted, removed on the next save
_MAX_FAILED = 4
_reported: list = []  # names already reported unreadable since boot: one event each, not one per offer


def _valid(h):
    if type(h) is not dict or not store.is_int(h.get("seq", 0), 0, 0x7FFFFFFF):
        return False
    if not store.is_int(h.get("counter"), 0, 0xFFFFFFFF):
        return False
    if h.get("release") is not None and not store.is_release(h["release"]):
        return False
    failed = h.get("failed")
    if type(failed) is not list or len(failed) > _MAX_FAILED:
        return False
    for release in failed:
        if not store.is_release(release):
            return False
    return True


def _copies():
    """{name: record} of the copies that read back well, and whether any copy exists."""
    good = {}
    seen = False
    for name in _COPIES + (_LEGACY,):
        if not store.present(name):
            continue
        seen = True
        data = store.read(name)
        record = store.decode_json(data, _valid) if data is not None else None
        if record is None:
            if name not in _reported:
                _reported.append(name)
                store.report(name, "bad_history")
        else:
            record.setdefault("seq", 0)
            good[name] = record
    return good, seen


def _newest(good):
    name = None
    for n in good:
        if name is None or good[n]["seq"] > good[name]["seq"]:
            name = n
    return name


def load():
    """{"counter", "release", "failed", "seq"}; raises StateError when no copy can be read."""
    good, seen = _copies()
    if not good:
        if seen:
            raise StateError("bad_history", "no copy of the anti-downgrade floor can be read")
        return {"seq": 0, "counter": 0, "release": None, "failed": []}
    history = dict(good[_newest(good)])
    history["counter"] = max(r["counter"] for r in good.values())
    return history


def save(history):
    """Write `history` to both copies in turn; the floor it records never goes down."""
    good, _ = _copies()
    newest = _newest(good)
    record = {"seq": (good[newest]["seq"] + 1) if newest else 1,
              "counter": max([history["counter"]] + [r["counter"] for r in good.values()]),
              "release": history["release"], "failed": history["failed"]}
    for name in _COPIES:
        store.write_json(name, record)
    store.remove(_LEGACY)  # its counter is in the copies just written


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
