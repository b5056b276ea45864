"""What this device has installed and refused, kept across reboots and firmware changes.

`counter` is the anti-downgrade floor: the security counter of the last confirmed release.
`failed` remembers releases that rolled back, so a retained bad release is not tried forever."""
from ota import store

_NAME = "history"
_MAX_FAILED = 4


def load():
    return store.read_json(_NAME, {"counter": 0, "release": None, "failed": []})


def save(history):
    store.write_json(_NAME, history)


def confirmed(release, counter):
    history = load()
    history["release"] = release
    history["counter"] = max(history["counter"], counter)
    if release in history["failed"]:
        history["failed"].remove(release)
    save(history)


def failed(release):
    history = load()
    if release and release not in history["failed"]:
        history["failed"] = (history["failed"] + [release])[-_MAX_FAILED:]
        save(history)
