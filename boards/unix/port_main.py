"""What the ESP32 port's C main does after the bootloader hands over, run under the unix port:
set sys.path as the board has it, run frozen `_boot`, then `boot.py`, then `main.py`.

An exception is printed and the next file still runs; SystemExit asks for a soft reset. When
main.py is done the board would sit at the REPL: this process exits and the supervisor models
the idle board (its watchdog keeps running).
"""
import os
import sys

import sim_link

_frozen = os.getenv("OTASIM_FROZEN")
# ".frozen": the modules frozen into the unix binary (asyncio among them), standing in for those
# the ESP32 build freezes (its sys.path is ['', '.frozen', '/lib']).
sys.path[:] = [os.getenv("OTASIM_MODULES"), "", ".frozen", _frozen, "lib"]
_globals = {"__name__": "__main__"}


def _run(path, name):
    """Run one file in the REPL's namespace; False when it asked for a soft reset."""
    try:
        with open(path) as f:
            source = f.read()
    except OSError:
        return True
    try:
        exec(compile(source, name, "exec"), _globals)
    except SystemExit:
        return False
    except BaseException as exc:  # the board prints it and carries on
        sys.print_exception(exc)
    return True


_run(_frozen + "/_boot.py", "_boot.py")  # the port ignores how frozen _boot ends
if not (_run("boot.py", "boot.py") and _run("main.py", "main.py")):
    sim_link.send("soft")
