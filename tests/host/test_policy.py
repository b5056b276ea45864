"""Install permissions (ota.policy) under the unix port: a maintenance window, also one that
wraps past midnight, read from the device's clock."""
import json

from mpunix import LIB, SIM_MODULES


def test_window_allows_only_its_hours(mp):
    code = """
import json
from ota import policy
out = {}
for start, end in ((2, 4), (22, 3)):
    out["%d-%d" % (start, end)] = [h for h in range(24) if policy.window(start, end, clock=lambda: (2026, 1, 1, h, 0, 0, 0, 0))()]
print(json.dumps(out))
"""
    got = json.loads(mp(code).stdout)
    assert got == {"2-4": [2, 3], "22-3": [0, 1, 2, 22, 23]}


def test_install_setting_of_the_device_config(mp):
    code = """
import json
from ota.service import _permission
out = [_permission("now")(), _permission("window 0 24")(), _permission("window 5 5")()]
for bad in ("later", "window 2", "window a b"):
    try:
        _permission(bad)
        out.append("accepted " + bad)
    except ValueError:
        out.append("refused")
print(json.dumps(out))
"""
    # ota.service imports the board's esp32 module; compiling the sources needs more than a board's heap
    out = mp(code, path=(SIM_MODULES, LIB), heapsize="1M").stdout
    assert json.loads(out) == [True, True, False, "refused", "refused", "refused"]
