"""Choose the app bundle to run, in boot.py, before the application imports anything.

A board with app bundles keeps two folders, apps/a and apps/b, and a record (`.ota/bundle`,
written whole or not at all by `ota.store`) that names the active one. `select()` puts the
active folder first on the module path; main.py (`run()`) then runs that folder's main.py.

This module is the bundles' bootloader: boot.py imports it from the base `lib/ota` before any
bundle is on the path, so the code of a bundle on trial never decides its own fate. A bundle
that hangs, raises, fails its checks, never confirms or carries a broken copy of `ota` is
rolled back here on the next boot. It uses only built-in modules and `ota.store`.

Trial accounting lives in the record, not in the reset cause: rp2's `reset_cause()` says
WDT_RESET after `machine.reset()` and after a watchdog timeout alike. The first boot of a new
bundle is its trial (the watchdog is armed here); any later boot before the application
confirmed it rolls it back."""
import os
import sys

import machine
from micropython import const

STATE = "bundle"  # ota.store.BUNDLE
RECORD = ".ota/bundle"  # ota.store.path(STATE): checked before ota.store is loaded
APPS = "apps"
_RP2_WDT_MAX = const(8388)  # ports/rp2/machine_wdt.c: the largest timeout the RP2040 takes


def folder(name):
    return APPS + "/" + name


def load():
    """The record: active folder, the confirmed bundle (release, version, counter: the bundles'
    anti-downgrade floor), the trial in progress and the outcome of the last one."""
    from ota import store

    return store.read_json(STATE) or {"active": None, "release": None, "version": None, "counter": 0,
                                      "trial": None, "outcome": None}


def save(state):
    from ota import store

    store.write_json(STATE, state)


def watchdog(ms):
    """The hardware watchdog at `ms`, or at the port's longest timeout when `ms` is above it."""
    try:
        return machine.WDT(timeout=ms)
    except ValueError:
        return machine.WDT(timeout=_RP2_WDT_MAX)


def _cause():
    # PWRON_RESET is the one cause every port can tell apart: nothing the bundle did.
    return "power_loss" if machine.reset_cause() == machine.PWRON_RESET else "reset"


def select(wdt_ms=None):
    """Settle the trial record, arm the watchdog on a trial boot and put the active bundle first
    on sys.path. Returns the active folder's name, or None (no bundle installed yet)."""
    try:
        os.stat(RECORD)
    except OSError:  # a board without app bundles: load nothing more
        _forget_ota()
        return None
    state = load()
    trial = state["trial"]
    if trial and trial["boots"]:
        state["active"] = trial["from"]
        state["outcome"] = {"kind": "rolled_back", "release": trial["release"], "version": trial["version"],
                            "reason": trial.get("reason") or _cause()}
        state["trial"] = None
        save(state)
    elif trial:
        trial["boots"] = 1
        save(state)
        if wdt_ms is None:
            from ota import config

            wdt_ms = config.load()["wdt_ms"]
        watchdog(wdt_ms)
    active = state["active"]
    if active:
        sys.path.insert(sys.path.index("") if "" in sys.path else 0, folder(active))
    _forget_ota()
    return active


def _forget_ota():
    """Drop the base `ota` modules loaded so far: the bundle's own copy of `ota`, if it has one,
    is the one the application imports next."""
    for name in list(sys.modules):
        if name == "ota" or name.startswith("ota."):
            del sys.modules[name]


def run():
    """main.py of a board with bundles: the active bundle's main.py; with no bundle installed
    yet, the update service alone, waiting for the first one."""
    active = load()["active"]
    if active:
        path = folder(active) + "/main.py"
        with open(path) as f:
            source = f.read()
        exec(compile(source, path, "exec"), {"__name__": "__main__"})
        return
    import time

    import ota.service

    updates = ota.service.start()
    while True:
        updates.poll()
        time.sleep_ms(10)
