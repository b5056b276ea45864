"""`sys` as the board's programs see it: the unix port's own module, with `platform` "esp32" as
on the esp32 port. The unix port's `sys` cannot be changed, so sim_port puts this module in its
place in sys.modules; every other name is the real module's (path, modules, stdout, exit...)."""
import sys as _unix

platform = "esp32"


def __getattr__(name):
    return getattr(_unix, name)
