"""A Pico W's boot under the unix port (ports/rp2/main.c `main`): the filesystem is mounted
(modules/rp2_port.py), then `boot.py` runs and, only if it ended without an exception,
`main.py`. SystemExit asks for a soft reset."""
import sys

sys.path.insert(0, __file__.rsplit("/", 1)[0] + "/modules")  # rp2's built-ins before the ESP32 ones
import rp2_port
import sim_link

_globals = {"__name__": "__main__"}
rp2_port.start(_globals)
_ret = rp2_port.run("boot.py", _globals)
if _ret == "ok":
    _ret = rp2_port.run("main.py", _globals)
if _ret == "exit":
    sim_link.send("soft")
