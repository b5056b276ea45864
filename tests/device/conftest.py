"""Device tests over the real mpremote CLI, on the board given by `--port` or on a virtual board
(`--virtual`: the simulator behind a pty, started on a fresh flash for the session). Without
either the run fails at once: these tests never skip for want of a board."""
import ast
import json
import time
from pathlib import Path

import pytest

from tests.device.virtualboard import VirtualBoardProcess, VirtualPicoProcess, mpremote
from mpota import fwimage, mpy

SCRIPTS = Path(__file__).resolve().parent / "scripts"
BOARDS = {"esp32": "esp32-generic", "rp2": "rp2-pico-w"}  # --board: the name manifests are signed for
NATIVE_ARCH = {"esp32": "xtensawin", "rp2": "armv6m"}
STATES = {0: "NEW", 1: "PENDING_VERIFY", 2: "VALID", 3: "INVALID", 4: "ABORTED", None: None}


def pytest_addoption(parser):
    group = parser.getgroup("device", "device tests (tests/device)")
    group.addoption("--port", help="serial port of a real board, e.g. /dev/ttyUSB0")
    group.addoption("--virtual", action="store_true", help="run on a virtual board (the simulator behind a pty)")
    group.addoption("--allow-reboot", action="store_true",
                    help="also run the tests that switch the running slot and reset the board")
    group.addoption("--board", choices=sorted(BOARDS), default="esp32",
                    help="the kind of board: esp32 (default) or rp2 (a Pico W: app bundles, no firmware slots); "
                         "with --virtual, the simulator of that kind")
    group.addoption("--arch", help="architecture of the deployed .mpy (default: xtensawin on an ESP32 --port, "
                                   "armv6m on an rp2 --port, bytecode on --virtual)")


def pytest_configure(config):
    if bool(config.getoption("--port")) == bool(config.getoption("--virtual")):
        raise pytest.UsageError("tests/device needs exactly one board: --port /dev/ttyUSB0 for a real one or "
                                "--virtual for the simulator behind a pty (see docs/DEVICE_TESTS.md)")
    config.addinivalue_line("markers", "reboot: switches the running slot and resets the board (--allow-reboot)")
    config.addinivalue_line("markers", "esp32: uses the ESP32's firmware slots (esp32.Partition); not on --board rp2")


def pytest_collection_modifyitems(config, items):
    reboot = pytest.mark.skip(reason="needs --allow-reboot: it switches the running slot and resets the board")
    esp32 = pytest.mark.skip(reason="ESP32 firmware slots: an rp2 board has none (its updates are app bundles)")
    for item in items:
        if "esp32" in item.keywords and config.getoption("--board") != "esp32":
            item.add_marker(esp32)
        elif "reboot" in item.keywords and not config.getoption("--allow-reboot"):
            item.add_marker(reboot)


class Board:
    """The board under test, reached only through mpremote subprocesses."""

    def __init__(self, port, kind, virtual=None):
        self.port = port
        self.kind = kind  # "esp32" or "rp2"
        self.name = BOARDS[kind]
        self.virtual = virtual  # the VirtualBoardProcess, or None for a real board

    def mpremote(self, *args, timeout=120, check=True):
        return mpremote(self.port, *args, timeout=timeout, check=check)

    def run(self, script, timeout=300, **args):
        """Run scripts/<script>.py on the board with the global ARGS = args; returns the object
        it printed on its `RESULT <json>` line."""
        out = self.mpremote("exec", "ARGS = %r" % (args,), "run", SCRIPTS / (script + ".py"), timeout=timeout).stdout
        lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
        assert lines, "no RESULT from %s:\n%s" % (script, out)
        return json.loads(lines[-1][7:])

    def put(self, local, remote):
        self.mpremote("fs", "cp", local, ":" + remote)

    def eval(self, expression):
        return ast.literal_eval(self.mpremote("exec", "print(repr(%s))" % expression).stdout.strip())

    def reset(self):
        """`mpremote reset`, then wait until the board answers again."""
        self.mpremote("reset")
        time.sleep(0.5 if self.virtual else 3.0)
        end = time.monotonic() + 60
        while self.mpremote("eval", "1", timeout=15, check=False).returncode != 0:
            if time.monotonic() > end:
                raise AssertionError("the board did not come back after a reset")
            time.sleep(1)

    def ota_state(self):
        """(running slot, state of its otadata entry as a name, next update slot)."""
        s = self.run("ota_state")
        return s["running"], STATES[s["state"]], s["next"]


@pytest.fixture(scope="session")
def board(request, tmp_path_factory):
    port = request.config.getoption("--port")
    kind = request.config.getoption("--board")
    if port:
        yield Board(port, kind)
        return
    if kind == "rp2":
        vb = VirtualPicoProcess(tmp_path_factory.mktemp("vpico"))
    else:  # the simulator freezes the port's own _boot (it mounts the filesystem) into every image
        vb = VirtualBoardProcess(tmp_path_factory.mktemp("vboard"), fwimage.build_image("1.0.0", {}),
                                 heapsize="200K")  # the bundle test's updater, with 64-bit objects (as test_esp32_bundle)
    vb.start()
    try:
        yield Board(vb.port, kind, vb)
    finally:
        vb.stop()


@pytest.fixture(scope="session")
def deployed(board, request, tmp_path_factory):
    """The board with the project's lib/ota as .mpy in :lib/ota (replacing any older copy)."""
    arch = request.config.getoption("--arch") or ("bytecode" if board.virtual else NATIVE_ARCH[board.kind])
    out = tmp_path_factory.mktemp("mpy") / "ota"
    mpy.build(arch, out)
    board.mpremote("exec", "import os\ntry:\n os.mkdir('lib')\nexcept OSError:\n pass")
    board.mpremote("fs", "rm", "-r", ":lib/ota", check=False)
    board.mpremote("fs", "cp", "-r", out, ":lib/", timeout=600)
    names = board.eval("sorted(__import__('os').listdir('lib/ota'))")
    assert names == sorted(p.name for p in out.iterdir())
    return board
