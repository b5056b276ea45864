"""What the ESP32 port's C main does after the bootloader hands over (ports/esp32/main.c,
mp_task), run under the unix port: the board's start-up (sim_port: filesystem, frozen `_boot`),
then `boot.py`, then `main.py` only if boot.py ended without an exception (as since v1.22).

SystemExit in boot.py or main.py asks for a soft reset. When main.py is done the board would sit
at the REPL: this process exits and the supervisor models the idle board (its watchdog keeps
running).
"""
import sim_link
import sim_port

_globals = {"__name__": "__main__"}
sim_port.start(_globals)
_ended = sim_port.run("boot.py", _globals)
if _ended == "ok":
    _ended = sim_port.run("main.py", _globals)
if _ended == "exit":
    sim_link.send("soft")
