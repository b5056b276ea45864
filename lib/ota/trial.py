"""Trial boot: a new image runs under a watchdog until it proves itself, or it rolls back.

boot.py calls `on_boot()`. On the first boot of a new image (otadata: PENDING_VERIFY) it arms
`machine.WDT`; the application then calls `confirm(checks)` once it is healthy (the broker is
reachable again, its own checks pass). A hang (watchdog), a failed check, a crash loop or a
missed deadline resets the board before confirmation, and the bootloader boots the old image,
which reports `rolled_back` with the reason it can tell. The accounting lives in a file because
reset causes are not reliable on every port (rp2 reports WDT_RESET for machine.reset())."""
import time

import machine

from ota import events, history, otadata, store
from ota.progress import Progress
from ota.slot import app_version

try:
    import esp32
except ImportError:  # rp2: no firmware slots; only app bundles have trials (ota.bundle)
    esp32 = None  # type: ignore[assignment]

_CAUSES = {
    machine.WDT_RESET: "watchdog",
    getattr(machine, "HARD_RESET", -1): "reset",  # rp2 has only PWRON_RESET and WDT_RESET
    machine.PWRON_RESET: "power_loss",
}

_wdt = None
_deadline = None  # set while on trial, cleared by confirmation


def bundle_trials():
    """`ota.bundle_trial` on a board with app bundles, else None: a board that has never had a
    bundle does not load it (heap)."""
    if not store.exists(store.BUNDLE):
        return None
    from ota import bundle_trial

    return bundle_trial


def _pending():
    return store.read_json(store.PENDING)


def on_boot(wdt_ms=30000, confirm_within_ms=300000):
    """Arm the watchdog on a trial boot and settle what the last install led to.
    Returns True on a trial boot."""
    global _wdt, _deadline
    bundles = bundle_trials()
    _wdt = bundles and bundles.on_boot(wdt_ms)
    if _wdt:  # an app bundle's first boot: the same watchdog and deadline as a firmware's
        _deadline = time.ticks_add(time.ticks_ms(), confirm_within_ms)
        return True
    if esp32 is None:  # rp2: no firmware slots; what runs is the bundle
        events.emit("booted", **(bundles.running() if bundles else {}))
        return False
    running = esp32.Partition(esp32.Partition.RUNNING)  # type: ignore[arg-type]  # stub: label only; RUNNING works
    index = otadata.slot_index(running)
    version = app_version(running)
    slot = running.info()[4]
    pending = _pending()
    if otadata.running_state() == otadata.PENDING_VERIFY:
        _wdt = machine.WDT(timeout=wdt_ms)
        _deadline = time.ticks_add(time.ticks_ms(), confirm_within_ms)
        events.emit("trial", release=pending and pending["release"], target=version, version=version, slot=slot, progress=100)
        return True
    events.emit("booted", version=version, slot=slot)
    if pending is None:
        return False
    if pending["slot"] == index:
        _confirmed(pending)  # confirmed, but the power went before the books were closed
        return False
    seq, state = otadata.newest(pending["slot"])
    if seq > pending["seq"] and state in (otadata.ABORTED, otadata.INVALID):
        reason = pending.get("reason") or _CAUSES.get(machine.reset_cause(), "reset")
        if reason != "power_loss":
            # The firmware failed: never again. A power loss is not its fault: the verified
            # download is still in the slot, and the updater installs it again.
            history.failed(pending["release"])
            Progress.clear()
        events.emit("rolled_back", release=pending["release"], target=pending["version"], version=version, reason=reason)
    # else set_boot() never completed: the download is still whole, the updater finishes it again
    store.remove(store.PENDING)
    return False


def in_trial():
    """True from a trial boot until the image is confirmed."""
    return _deadline is not None


def feed():
    """Feed the trial watchdog; past the confirmation deadline, give up and roll back."""
    if _wdt is None:
        return
    if _deadline is not None and time.ticks_diff(time.ticks_ms(), _deadline) > 0:
        _fail("confirm_timeout")
    _wdt.feed()


def confirm(checks=()):
    """Mark the running image valid if every check returns True. A check that returns None
    cannot tell yet (a sensor still warming up): returns False, call again later; the deadline
    still runs. False, or an exception, rolls back now.
    Returns True when the image is (now or already) confirmed."""
    global _deadline
    bundles = bundle_trials()
    on_trial = bundles and bundles.trial()
    if not on_trial and otadata.running_state() != otadata.PENDING_VERIFY:
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
    if bundles and on_trial:
        bundles.confirm(_wdt and _wdt.feed)
        _deadline = None
        return True
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
    events.emit("confirmed", release=release, version=app_version(running), slot=running.info()[4], reason=None)


def _fail(reason):
    bundles = bundle_trials()
    release = bundles and bundles.fail(reason)
    pending = _pending()
    if pending:
        pending["reason"] = reason
        store.write_json(store.PENDING, pending)
        release = pending["release"]
    events.emit("trial_failed", release=release, reason=reason)
    machine.reset()
