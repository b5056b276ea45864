"""Shared fixtures. Fixture families live in their own modules, loaded as plugins."""
import pytest

import mpunix

pytest_plugins = ["plugin_sim", "plugin_broker"]


@pytest.fixture
def mp():
    """Run a snippet of device code under the MicroPython unix port: `mp(code, heapsize=...)`."""
    return mpunix.run
