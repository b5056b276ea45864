"""A simulated Pico W behind a pseudo-terminal for mpremote: the ESP32 virtual board's REPL
bridge (simhost/vboard.py) over the rp2 supervisor (board.py). The differences are the
board's: no bootloader (every reset runs the same firmware, which mounts LittleFS on
`rp2.Flash()`), `machine.reset()` reboots through the watchdog (WDT_RESET), a soft reset keeps
the reset cause, and a crashed VM hangs the core until the watchdog, if armed, resets it."""
import time

import rp2host
from rp2host import board as rp2board
from simhost import supervisor, vboard
from simhost.supervisor import PWRON_RESET, WDT_RESET


class VirtualPico(vboard.ReplBridge, rp2board.Board):
    port_import = "import sys\nsys.path.insert(0, %r)\nimport rp2_port as _port\n" % str(rp2host.MODULES)
    board_name = "Raspberry Pi Pico W with RP2040"

    def __init__(self, flash, **options):
        super().__init__(flash, **options)
        self.cause = PWRON_RESET
        self.version = "rp2"

    def power_up(self, cause, wake):
        self.cause = cause
        self.boot(cause)
        return "rp2"

    def soft_cause(self):
        return self.cause  # the reset reason register is unchanged by a soft reset

    def vm_died(self):
        left = max(0.0, self.deadline - time.monotonic()) if self.wdt is not None else None
        self.say("the core hangs" + (" until the watchdog" if left is not None else ""))
        self.sleep_until(left, WDT_RESET)

    def outcome(self, outcome):
        self.reset(PWRON_RESET if outcome[0] == "cut" else WDT_RESET)  # reset(): through the watchdog


def run(flash, **options):
    supervisor.lead_group()
    vboard.serve(VirtualPico(flash, **options))
