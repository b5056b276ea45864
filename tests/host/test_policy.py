"""Install permissions (ota.policy) under the unix port: a maintenance window, also one that
wraps past midnight, read from the device's clock."""
import json


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
