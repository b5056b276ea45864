"""Trial boot: a new image runs under a watchdog until it proves itself, or it rolls back.

boot.py calls `on_boot()`. On the first boot of a new image (otadata: PENDING_VERIFY) it arms
`machine.WDT`; the application then calls `confirm(checks)` once it is healthy (the broker is
reachable again, its own checks pass). A hang (watchdog), a failed check, a crash loop or a
missed deadline resets the board before confirmation, and the bootloader boots the old image,
which reports `rolled_back` with the reason it can tell. The accounting lives in a file because
reset causes are not reliable on every port (rp2 reports WDT_RESET for machine.reset()).

This module holds what every poll needs: the watchdog, the deadline, what runs. The bookkeeping
that settles, confirms or fails a trial (`ota.outcome`, with the records it reads) is loaded
for that step and unloaded after it, so a board that is not on trial does not keep it."""
import time

import ota

_wdt = None  # these four are set by ota.outcome
_deadline = None  # set while on trial, cleared by confirmation
_running = (None, None)  # (release, version) of the running image
_link = None  # on trial: None (no network used yet), False (tried, never reached), True (reached)

# What ota.outcome loads besides itself. Those the updater shares stay while it holds them;
# ota.history stays too (it reports an unreadable copy once per boot).
_OUTCOME_ONLY = ("installed", "bundle_trial", "bundle_boot")
_SHARED = ("otadata", "store", "progress", "slot")


def close():
    """Unload `ota.outcome` and what only it needed, once a step is done with them."""
    import sys

    ota.unload("outcome", *_OUTCOME_ONLY)
    if "ota.updater" not in sys.modules:
        ota.unload(*_SHARED)


def bundle_trials():
    """`ota.bundle_trial` on a board with app bundles, else None: a board that has never had a
    bundle does not load it (heap)."""
    from ota import store

    if not store.exists(store.BUNDLE):
        return None
    from ota import bundle_trial

    return bundle_trial


def running():
    """(release id, version) of the running image, from the signed manifest it was installed
    with (see `ota.installed`); (None, None) for an image this device did not install."""
    return _running


def on_boot(wdt_ms=30000, confirm_within_ms=300000):
    """Arm the watchdog on a trial boot and settle what the last install led to.
    Returns True on a trial boot."""
    from ota import outcome

    try:
        return outcome.on_boot(wdt_ms, confirm_within_ms)
    finally:
        close()


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
    from ota import outcome

    try:
        return outcome.confirm(checks)
    finally:
        close()


def _fail(reason):
    from ota import outcome

    try:
        outcome.fail(reason)
    finally:
        close()
