"""App-bundle trials, for `ota.trial` and the updater: what the bundle record says about the
bundle running now, and the agent's side of a trial (report a rollback, give up, confirm).

Kept apart from the bundle sink (`ota.bundle`) so that a board that is not installing a bundle
never loads the sink. The rollback itself is done by `ota.bundle_boot` at boot."""
import os

from ota import bundle_boot, events, history, store

STAGE = "bundle.part"  # the staged download, a folder of chunks (ota.bundle writes it)


def running():
    """Version and folder of the bundle running now, for the `booted` event."""
    state = bundle_boot.load()
    return {"version": state["version"], "slot": state["active"] and bundle_boot.folder(state["active"])}


def running_release():
    return bundle_boot.load()["release"]


def on_trial():
    return bundle_boot.load()["trial"] is not None


def trial():
    """The bundle trial this boot runs, or None."""
    return bundle_boot.load()["trial"]


def on_boot(wdt_ms):
    """At boot (ota.trial): report how the last trial ended; on a bundle's trial boot, announce
    it and return the watchdog (armed by boot.py already), else None."""
    _settle()
    t = trial()
    if not t:
        return None
    events.emit("trial", release=t["release"], target=t["version"], version=t["version"], slot="apps", progress=100)
    return bundle_boot.watchdog(wdt_ms)


def _settle():
    """Report a rollback that boot.py did."""
    state = bundle_boot.load()
    outcome = state["outcome"]
    if not outcome or outcome["kind"] != "rolled_back":
        return
    blamed = outcome["reason"] != "power_loss"  # a power loss is not the bundle's fault
    if blamed:
        history.failed(outcome["release"])  # never again
    events.emit("rolled_back", release=outcome["release"], target=outcome["version"], version=state["version"],
                reason=outcome["reason"])
    state["outcome"] = None
    bundle_boot.save(state)
    if blamed:
        _forget_download()  # else the staged download is still whole: the updater installs it again


def fail(reason):
    """Record why the trial is being given up (the caller resets and boot.py rolls back);
    returns the release on trial, or None."""
    state = bundle_boot.load()
    t = state["trial"]
    if not t:
        return None
    t["reason"] = reason
    bundle_boot.save(state)
    return t["release"]


def confirm(tick=None):
    """The application is healthy: the bundle on trial becomes the confirmed one. `tick` feeds
    the watchdog while the staged download is deleted."""
    state = bundle_boot.load()
    t = state["trial"]
    if not t:
        return
    state.update(release=t["release"], version=t["version"], counter=max(state["counter"], t["counter"]),
                 trial=None, outcome=None)
    bundle_boot.save(state)
    _forget_download(tick)
    events.emit("confirmed", release=t["release"], version=t["version"], slot=bundle_boot.folder(state["active"]),
                reason=None)


def _forget_download(tick=None):
    store.remove(store.PROGRESS)
    store.remove(store.MANIFEST)
    remove_tree(store.path(STAGE), tick)


def remove_tree(path, tick=None):
    """Delete a folder and everything in it (nothing if it is not there)."""
    try:
        names = os.listdir(path)
    except OSError:
        return
    for name in names:
        sub = path + "/" + name
        if os.stat(sub)[0] & 0x4000:
            remove_tree(sub, tick)
        else:
            os.remove(sub)
        if tick:
            tick()
    os.rmdir(path)
