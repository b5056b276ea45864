"""Host tools for micropython-ota (CPython): keys, signing, publishing, fleet and the simulator."""
