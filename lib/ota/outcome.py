"""What a trial boot leads to, for `ota.trial`: settle the last install at boot, confirm the new
image, or fail its trial and roll back. Loaded for that step and unloaded after it
(`trial.close`): a board that is not on trial never keeps this code, nor the records it reads.
The state every poll needs (the watchdog, the deadline) stays in `ota.trial`."""
import time

import machine

from ota import events, installed, otadata, store, trial

try:
    import esp32
except ImportError:  # rp2: no firmware slots; only app bundles have trials (ota.bundle)
    esp32 = None  # type: ignore[assignment]

_CAUSES = {
    machine.WDT_RESET: "watchdog",
    getattr(machine, "HARD_RESET", -1): "reset",  # rp2 has only PWRON_RESET and WDT_RESET
    machine.PWRON_RESET: "power_loss",
}

UNREACHABLE_TRIES = 3  # trials of one release that may end without reaching the broker
_UNREACHED = "unreached"  # {"release", "tries"}: such trials so far


def _pending():
    return store.read_json(store.PENDING)


def on_boot(wdt_ms, confirm_within_ms):
    """`trial.on_boot`: arm the watchdog on a trial boot and settle what the last install led
    to. Returns True on a trial boot."""
    bundles = trial.bundle_trials()
    trial._wdt = bundles and bundles.on_boot(wdt_ms)
    if trial._wdt:  # an app bundle's first boot: the same watchdog and deadline as a firmware's
        trial._deadline = time.ticks_add(time.ticks_ms(), confirm_within_ms)  # type: ignore[assignment]
        return True
    if esp32 is None:  # rp2: no firmware slots; what runs is the bundle
        events.emit("booted", **(bundles.running() if bundles else {}))
        return False
    part = esp32.Partition(esp32.Partition.RUNNING)  # type: ignore[arg-type]  # stub: label only; RUNNING works
    index = otadata.slot_index(part)
    slot = part.info()[4]
    seq, state = otadata.newest(index) if index is not None else (0, None)
    pending = _pending()
    if state not in (None, otadata.VALID, otadata.PENDING_VERIFY):
        _revert(pending)  # returns only when there is no other image to go back to
    trial._running = installed.of(part, seq)
    on_trial = state not in (None, otadata.VALID)
    if not on_trial:
        events.emit("booted", release=trial._running[0], version=trial._running[1], slot=slot)
    if pending is not None and pending["slot"] != index:
        _settle(pending)  # after `booted`: the state then names the release that rolled back
        pending = None
    if on_trial:
        if pending is not None and not pending.get("tried"):
            # Marked, because otadata cannot tell a second failed trial of the same slot from an
            # unfinished set_boot(): ESP-IDF gives the new entry the seq the aborted one had.
            pending["tried"] = True
            store.write_json(store.PENDING, pending)
        trial._wdt = machine.WDT(timeout=wdt_ms)  # type: ignore[assignment]
        trial._deadline = time.ticks_add(time.ticks_ms(), confirm_within_ms)  # type: ignore[assignment]
        if pending is not None:
            trial._running = (pending["release"], pending["version"])
        release, version = trial._running
        events.emit("trial", release=release, target=version, version=version, slot=slot, progress=100,
                    encoding=pending and pending.get("encoding"))
        return True
    if pending is not None:
        trial._running = (pending["release"], pending["version"])
        _confirmed(pending)  # confirmed, but the power went before the books were closed
    return False


def _settle(pending):
    """The old image runs again after an install: say why, and whether to try that release again."""
    seq, state = otadata.newest(pending["slot"])
    if pending.get("reverted") or pending.get("tried") or (seq > pending["seq"] and state in (otadata.ABORTED, otadata.INVALID)):
        reason = pending.get("reason") or _CAUSES.get(machine.reset_cause(), "reset")
        if reason != "power_loss" and not (reason == "unreachable" and _retry(pending["release"])):
            # The firmware failed: never again. A power loss is not its fault: the verified
            # download is still in the slot, and the updater installs it again.
            from ota import history  # only after an install: a plain boot does not load it

            history.failed(pending["release"])
            store.remove(store.PROGRESS)
        events.emit("rolled_back", release=pending["release"], target=pending["version"], version=trial._running[1],
                    reason=reason)
    # else set_boot() never completed: the download is still whole, the updater finishes it again
    store.remove(store.PENDING)


def _revert(pending):
    """Fail closed on a torn otadata state word. A power cut inside an otadata write can leave a
    state that is neither VALID nor PENDING_VERIFY with seq and CRC intact (the CRC covers only
    seq); the bootloader boots such an entry with no trial (bootloader_utility.c,
    bootloader_utility_get_selected_boot_partition() rejects only INVALID and ABORTED). So this
    image is not trusted: the other slot boots again, and with it the last confirmed firmware."""
    try:
        other = esp32.Partition(esp32.Partition.RUNNING).get_next_update()  # type: ignore[arg-type]
        index = otadata.slot_index(other)
        if pending is not None:
            pending["reverted"] = True
            pending["reason"] = pending.get("reason") or "power_loss"  # not the firmware's fault
            store.write_json(store.PENDING, pending)
        before = otadata.newest(index)[0]
        other.set_boot()
    except OSError:
        return  # no other image passes the bootloader's check: run this one on trial
    installed.moved(other.info()[4], before, otadata.newest(index)[0])
    events.emit("trial_failed", release=pending and pending["release"], reason="torn_otadata")
    machine.reset()


def _retry(release):
    """A trial that never reached the broker failed for the network's sake: the release is
    installed again, up to UNREACHABLE_TRIES trials; after that the firmware itself is suspect
    (its network code may be what fails)."""
    seen = store.read_json(_UNREACHED) or {}
    tries = (seen.get("tries", 0) if seen.get("release") == release else 0) + 1
    store.write_json(_UNREACHED, {"release": release, "tries": tries})
    return tries < UNREACHABLE_TRIES


def confirm(checks):
    """`trial.confirm`: the deadline is cleared as soon as the image is valid."""
    bundles = trial.bundle_trials()
    on_trial = bundles and bundles.trial()
    if not on_trial and trial._deadline is None and otadata.running_state() != otadata.PENDING_VERIFY:
        return True
    for check in checks:
        try:
            ok = check()
        except Exception:
            ok = False
        if ok is None:
            return False
        if not ok:
            fail("health_check_failed")
    if bundles and on_trial:
        bundles.confirm(trial._wdt and trial._wdt.feed)
        trial._deadline = None
        return True
    esp32.Partition.mark_app_valid_cancel_rollback()
    trial._deadline = None
    _confirmed(_pending())
    return True


def _confirmed(pending):
    part = esp32.Partition(esp32.Partition.RUNNING)  # type: ignore[arg-type]  # stub: label only; RUNNING works
    release, version = trial._running
    if pending:
        from ota import history

        history.confirmed(release, pending["counter"])
    seq = otadata.newest(otadata.slot_index(part))[0]
    installed.record(part.info()[4], seq, release, version)
    if pending:  # the download is installed; else (an old image back on trial) it may still be
        store.remove(store.PROGRESS)
        store.remove(store.MANIFEST)
        store.remove(store.PENDING)
        store.remove(_UNREACHED)
    events.emit("confirmed", release=release, version=version, slot=part.info()[4], reason=None,
                encoding=pending and pending.get("encoding"))


def fail(reason):
    """`trial`'s verdict: the trial failed (`reason`); reported, then the board resets."""
    bundles = trial.bundle_trials()
    bundle = bundles and bundles.fail(reason)  # the bundle on trial, if that is what failed
    release = bundle
    pending = _pending()
    if pending:
        pending["reason"] = reason
        store.write_json(store.PENDING, pending)
        release = pending["release"]
    events.emit("trial_failed", release=release, reason=reason)
    if not bundle and esp32 is not None and otadata.running_state() != otadata.PENDING_VERIFY:
        _revert(pending)  # a torn state word: the bootloader would not roll back by itself
    machine.reset()
