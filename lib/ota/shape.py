"""Checks of values read from files and messages that may be damaged or hostile. Bools are not
integers here, and every length is bounded."""


def is_int(value, low, high):
    return type(value) is int and low <= value <= high


def is_text(value, longest, shortest=1):
    return type(value) is str and shortest <= len(value) <= longest


def is_release(value):
    """A release id as state files keep it: 16 lowercase hex characters."""
    if type(value) is not str or len(value) != 16:
        return False
    for c in value:
        if c not in "0123456789abcdef":
            return False
    return True
