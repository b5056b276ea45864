"""The device's end of the channel to the simulator's supervisor (the board's hardware).

The supervisor passes a pipe's write end as file descriptor OTASIM_CTL_FD; each message is one
ASCII line written with a single write(), so a line is never interleaved or half-sent. Without a
supervisor (a bare unix-port run) messages are dropped and halting raises SystemExit.
"""
import os
import time

_fd = os.getenv("OTASIM_CTL_FD")
_channel = open(int(_fd), "wb") if _fd else None


def send(message):
    """Tell the supervisor something ("wdt 5000", "feed"); returns at once."""
    if _channel is not None:
        _channel.write(message.encode() + b"\n")


def halt(message):
    """Hand the board over to the supervisor ("reset", "deepsleep 0") and never return."""
    if _channel is None:
        raise SystemExit(message)
    send(message)
    while True:  # the supervisor stops this process; nothing after this line runs
        time.sleep(1)
