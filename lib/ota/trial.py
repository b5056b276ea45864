"""Trial boot: a new image runs under a watchdog until it proves itself, or it rolls back.

boot.py calls `on_boot()`. On the first boot of a new image (otadata: PENDING_VERIFY) it arms
`machine.WDT`; the application then calls `confirm(checks)` once it is healthy (the broker is
reachable again, its own checks pass). A hang (watchdog), a failed check, a crash loop or a
missed deadline resets the board before confirmation, and the bootloader boots the old image,
which reports `rolled_back` with the reason it can tell. The accounting lives in a file because
reset causes are not reliable on every port (rp2 reports WDT_RESET for machine.reset())."""
import time

import esp32
import machine

from ota import events, history, otadata, store
from ota.progress import Progress
from ota.slot import app_version

_CAUSES = {
    machine.WDT_RESET: "watchdog",
    machine.HARD_RESET: "reset",
    machine.PWRON_RESET: "power_loss",
}

UNREACHABLE_TRIES = 3  # trials of one release that may end without reaching the broker
_UNREACHED = "unreached"  # {"release", "tries"}: such trials so far

_wdt = None
_deadline = None  # set while on trial, cleared by confirmation
_link = None  # on trial: None (no network used yet), False (tried, never reached), True (reached)


def _pending():
    return store.read_json(store.PENDING)


def on_boot(wdt_ms=30000, confirm_within_ms=300000):
    """Arm the watchdog on a trial boot and settle what the last install led to.
    Returns True on a trial boot."""
    global _wdt, _deadline
    running = esp32.Partition(esp32.Partition.RUNNING)  # type: ignore[arg-type]  # stub: label only; RUNNING works
    index = otadata.slot_index(running)
    version = app_version(running)
    slot = running.info()[4]
    pending = _pending()
    if otadata.running_state() == otadata.PENDING_VERIFY:
        if pending is not None and not pending.get("tried"):
            # Marked, because otadata cannot tell a second failed trial of the same slot from an
            # unfinished set_boot(): ESP-IDF gives the new entry the seq the aborted one had.
            pending["tried"] = True
            store.write_json(store.PENDING, pending)
        _wdt = machine.WDT(timeout=wdt_ms)
        _deadline = time.ticks_add(time.ticks_ms(), confirm_within_ms)
        events.emit("trial", release=pending and pending["release"], target=version, version=version, slot=slot, progress=100,
                    encoding=pending and pending.get("encoding"))
        return True
    events.emit("booted", version=version, slot=slot)
    if pending is None:
        return False
    if pending["slot"] == index:
        _confirmed(pending)  # confirmed, but the power went before the books were closed
        return False
    seq, state = otadata.newest(pending["slot"])
    if pending.get("tried") or (seq > pending["seq"] and state in (otadata.ABORTED, otadata.INVALID)):
        reason = pending.get("reason") or _CAUSES.get(machine.reset_cause(), "reset")
        if reason != "power_loss" and not (reason == "unreachable" and _retry(pending["release"])):
            # The firmware failed: never again. A power loss is not its fault: the verified
            # download is still in the slot, and the updater installs it again.
            history.failed(pending["release"])
            Progress.clear()
        events.emit("rolled_back", release=pending["release"], target=pending["version"], version=version, reason=reason)
    # else set_boot() never completed: the download is still whole, the updater finishes it again
    store.remove(store.PENDING)
    return False


def _retry(release):
    """A trial that never reached the broker failed for the network's sake: the release is
    installed again, up to UNREACHABLE_TRIES trials; after that the firmware itself is suspect
    (its network code may be what fails)."""
    seen = store.read_json(_UNREACHED) or {}
    tries = (seen.get("tries", 0) if seen.get("release") == release else 0) + 1
    store.write_json(_UNREACHED, {"release": release, "tries": tries})
    return tries < UNREACHABLE_TRIES


def link(up):
    """The service says whether it is connected to its broker; on trial, a confirmation
    deadline missed without ever reaching it fails as `unreachable`, not `confirm_timeout`."""
    global _link
    if _deadline is not None and _link is not True:
        _link = bool(up)


def in_trial():
    """True from a trial boot until the image is confirmed."""
    return _deadline is not None


def feed():
    """Feed the trial watchdog; past the confirmation deadline, give up and roll back."""
    if _wdt is None:
        return
    if _deadline is not None and time.ticks_diff(time.ticks_ms(), _deadline) > 0:
        _fail("unreachable" if _link is False else "confirm_timeout")
    _wdt.feed()


def confirm(checks=()):
    """Mark the running image valid if every check returns True. A check that returns None
    cannot tell yet (a sensor still warming up): returns False, call again later; the deadline
    still runs. False, or an exception, rolls back now.
    Returns True when the image is (now or already) confirmed."""
    global _deadline
    if otadata.running_state() != otadata.PENDING_VERIFY:
        _deadline = None
        return True
    for check in checks:
        try:
            ok = check()
        except Exception:
            ok = False
        if ok is None:
            return False
        if not ok:
            _fail("health_check_failed")
    esp32.Partition.mark_app_valid_cancel_rollback()
    _deadline = None
    _confirmed(_pending())
    return True


def _confirmed(pending):
    running = esp32.Partition(esp32.Partition.RUNNING)  # type: ignore[arg-type]  # stub: label only; RUNNING works
    release = pending and pending["release"]
    if pending:
        history.confirmed(release, pending["counter"])
    Progress.clear()
    store.remove(store.MANIFEST)
    store.remove(store.PENDING)
    store.remove(_UNREACHED)
    events.emit("confirmed", release=release, version=app_version(running), slot=running.info()[4], reason=None,
                encoding=pending and pending.get("encoding"))


def _fail(reason):
    pending = _pending()
    if pending:
        pending["reason"] = reason
        store.write_json(store.PENDING, pending)
    events.emit("trial_failed", release=pending and pending["release"], reason=reason)
    machine.reset()
