"""Shared fixtures. Fixture families live in their own modules, loaded as plugins."""
import pytest

import mpunix

pytest_plugins = [p for p in ("plugin_sim", "plugin_broker") if __import__("importlib.util").util.find_spec(p)]


@pytest.fixture
def mp():
    """Run a snippet of device code under the MicroPython unix port: `mp(code, heapsize=...)`."""
    return mpunix.run
