"""Status events: every step of an update, for whatever transport reports them.

`emit` updates the device's current state and tells every listener. Events emitted before any
listener exists (the trial or rollback noticed in boot.py, before the network is up) are kept,
a few at most, and replayed to the first listener. Events never carry secrets."""

_MAX_PENDING = 8

# kind -> state the device is in after that event
STATES = {
    "booted": "idle",
    "offered": "offered",
    "downloading": "downloading",
    "verified": "verified",
    "awaiting_permission": "awaiting_permission",
    "installing": "installing",
    "rebooting": "rebooting",
    "trial": "trial",
    "trial_failed": "rebooting",
    "confirmed": "idle",
    "rolled_back": "idle",
    "rejected": "idle",
    "trusted": "idle",  # a trust update replaced the trust file (no reboot)
}

_listeners: list = []
_pending: list = []
# version and slot: the running firmware; release and target: the release acted on, its version.
# encoding: how the release acted on travels (raw, deflate or delta).
_state = {"state": "idle", "version": None, "slot": None, "release": None, "target": None, "progress": 0,
          "reason": None, "encoding": None}


def listen(fn):
    """Register `fn(kind, fields)`; events it missed since boot are replayed to it first."""
    _listeners.append(fn)
    for kind, fields in _pending:
        _call(fn, kind, fields)
    _pending.clear()


def forget(fn):
    if fn in _listeners:
        _listeners.remove(fn)


def emit(kind, **fields):
    _state["state"] = STATES.get(kind, _state["state"])
    for key in ("version", "slot", "release", "target", "progress", "reason", "encoding"):
        if key in fields:
            _state[key] = fields[key]
    if kind in ("offered", "trial"):
        _state["reason"] = fields.get("reason")
    if not _listeners:
        if len(_pending) >= _MAX_PENDING:
            _pending.pop(0)
        _pending.append((kind, fields))
        return
    for fn in _listeners:
        _call(fn, kind, fields)


def _call(fn, kind, fields):
    # A failing reporter (network down) must never stop an update or a confirmation.
    try:
        fn(kind, fields)
    except Exception:
        pass


def state():
    """The device's current state, for a retained status message."""
    return _state
