"""The modules the real ESP32_GENERIC build freezes (ports/esp32/boards/manifest.py), on a
simulated board: micropython-lib's umqtt.simple and umqtt.robust (from the package index at set-up,
build/frozen) talk to a real mosquitto without a copy on the board's filesystem; the board's
ntptime sets the RTC from an NTP server the test runs, and a silent one costs `timeout` and an
OSError; and the import order is the port's: the filesystem root before frozen modules, frozen
modules before /lib."""
import ast
import calendar
import json
import socket
import struct
import threading
from datetime import date

import pytest

import mpunix
from mpunix import ROOT

FROZEN = ROOT / "build" / "frozen"


@pytest.fixture(scope="module")
def frozen_umqtt():
    """build/frozen/umqtt, which `make setup` fetches; missing, the test fails, it never skips."""
    for name in ("simple", "robust"):
        if not (FROZEN / "umqtt" / (name + ".py")).exists():
            pytest.fail("umqtt.%s is missing from %s: run `make setup`" % (name, FROZEN), pytrace=False)
    return FROZEN


MQTT_APP = """
import os
from umqtt.robust import MQTTClient as Robust
from umqtt.simple import MQTTClient

got = []
sub = Robust("frozen-sub", "127.0.0.1", %(port)d)
sub.set_callback(lambda topic, msg: got.append((topic, msg)))
sub.connect()
sub.subscribe(b"frozen/t", 1)
pub = MQTTClient("frozen-pub", "127.0.0.1", %(port)d)
pub.connect()
pub.publish(b"frozen/t", b"from umqtt.simple", qos=1)
pub.disconnect()
sub.wait_msg()
sub.disconnect()
print("GOT", got)
"""


def test_an_app_talks_to_mosquitto_through_the_frozen_umqtt_clients(sim_device, firmware, mosquitto, frozen_umqtt):
    broker = mosquitto()
    device = sim_device(firmware("1.0.0"), {"main.py": MQTT_APP % {"port": broker.port}})
    out = device.run(timeout=30)
    assert "GOT [(b'frozen/t', b'from umqtt.simple')]" in out.splitlines(), out
    assert [name for name in device.listdir("/") if name not in ("boot.py", "main.py")] == []  # nothing copied in
    log = broker.log_text()
    assert " as frozen-sub " in log and " as frozen-pub " in log


NTP_DELTA_1970 = 2208988800  # 1900-01-01 to 1970-01-01 (RFC 868)


def ntp_seconds(*utc):
    """The 32-bit seconds of an NTP timestamp for a UTC date (eras wrap at 2**32)."""
    return (calendar.timegm(utc) + NTP_DELTA_1970) % (1 << 32)


class NtpServer:
    """An NTP server on 127.0.0.1 that answers the n-th query with `answers[n]`: an NTP
    seconds value for the transmit timestamp, or None to stay silent."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.queries = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def forward_port_123(self, device):
        """The board's world forwards its datagrams to 127.0.0.1:123 here (socket.py's .nat file)."""
        rules = {"127.0.0.1:123": "127.0.0.1:%d" % self.port}
        (device.flash.parent / (device.flash.name + ".nat")).write_text(json.dumps(rules))

    def _serve(self):
        while True:
            try:
                query, peer = self.sock.recvfrom(512)
            except OSError:
                return  # closed
            self.queries.append(query)
            answer = self.answers[len(self.queries) - 1] if len(self.queries) <= len(self.answers) else None
            if answer is not None:
                reply = bytearray(48)
                reply[0] = 0x24  # leap 0, version 4, mode 4 (server)
                reply[1] = 1  # stratum 1
                reply[40:44] = struct.pack("!I", answer)
                self.sock.sendto(reply, peer)

    def close(self):
        self.sock.close()


NTP_APP = """
import machine, ntptime, time
ntptime.host = "127.0.0.1"
print("EPOCH", time.gmtime(0)[0])
print("TIME", ntptime.time())
print("TIME", ntptime.time())
ntptime.settime()
print("RTC", machine.RTC().datetime())
try:
    ntptime.settime()
except OSError as e:
    print("SILENT", e.errno)
print("RTC", machine.RTC().datetime())
"""


def test_ntptime_sets_the_rtc_from_an_ntp_server_and_a_silent_one_raises_oserror(sim_device, firmware):
    server = NtpServer([ntp_seconds(2031, 5, 6, 7, 8, 9), ntp_seconds(2040, 1, 1, 0, 0, 0),
                        ntp_seconds(2031, 5, 6, 7, 8, 9), None])
    try:
        device = sim_device(firmware("1.0.0"), {"main.py": NTP_APP})
        server.forward_port_123(device)
        out = device.run(timeout=30).splitlines()
    finally:
        server.close()
    epoch = int(next(line for line in out if line.startswith("EPOCH")).split()[1])
    since_1900 = (date(epoch, 1, 1) - date(1900, 1, 1)).days * 86400
    times = [int(line.split()[1]) for line in out if line.startswith("TIME")]
    assert times == [ntp_seconds(2031, 5, 6, 7, 8, 9) - since_1900,
                     ntp_seconds(2040, 1, 1, 0, 0, 0) + (1 << 32) - since_1900], out  # the second after the 2036 wrap
    rtc = [ast.literal_eval(line[4:]) for line in out if line.startswith("RTC")]
    for reading in rtc:  # set once; the silent server leaves it as it was
        assert reading[:6] == (2031, 5, 6, date(2031, 5, 6).weekday(), 7, 8) and 9 <= reading[6] < 40, out
    assert "SILENT 110" in out  # ETIMEDOUT, as the esp32 port's socket reports a receive timeout
    assert len(server.queries) == 4 and all(len(q) == 48 and q[0] == 0x23 for q in server.queries)  # v4 client


def test_ntptime_counts_from_the_esp32_ports_epoch_2000():
    """The unix port's epoch is 1970; the esp32 port's 2000 (py/mpconfig.h MICROPY_EPOCH_IS_2000)."""
    out = mpunix.run("import ntptime\nprint(ntptime._since_1900(2000), ntptime._since_1900(1970))",
                     path=(ROOT / "boards" / "unix" / "frozen",)).stdout.split()
    assert out == ["3155673600", str(NTP_DELTA_1970)]


RTC_APP = """
import machine
rtc = machine.RTC()
if machine.reset_cause() == machine.DEEPSLEEP_RESET:
    print("WOKE", rtc.datetime()[:3], rtc.memory())
else:
    print("POWERED", rtc.datetime()[0], rtc.memory())
    rtc.datetime((2031, 5, 6, 0, 7, 8, 9, 0))
    rtc.memory(b"kept")
    machine.deepsleep(10)
"""


def test_the_rtc_keeps_time_and_memory_through_deep_sleep_not_through_a_power_cut(sim_device, firmware):
    device = sim_device(firmware("1.0.0"), {"main.py": RTC_APP})
    out = device.run(timeout=30, max_boots=2).splitlines()
    assert "WOKE (2031, 5, 6) b'kept'" in out, out
    device.run(timeout=30, max_boots=1)  # power off, then on
    powered = [line.split() for line in device.console.splitlines() if line.startswith("POWERED")]
    assert len(powered) == 2 and powered[1][2] == "b''" and powered[1][1] != "2031", powered


ORDER_APP = """
import ntptime
import umqtt.simple
print("FROM", getattr(ntptime, "WHO", "frozen"), getattr(umqtt.simple, "WHO", "frozen"))
"""


def test_root_files_win_over_frozen_modules_and_frozen_ones_over_lib(sim_device, firmware, frozen_umqtt):
    """sys.path is ['', '.frozen', '/lib'] on the port (py/runtime.c mp_init, ports/esp32/main.c)."""
    shadow = 'WHO = "%s"\n'
    device = sim_device(firmware("1.0.0"), {"main.py": ORDER_APP, "lib/ntptime.py": shadow % "lib",
                                            "lib/umqtt/simple.py": shadow % "lib"})
    assert "FROM frozen frozen" in device.run(timeout=30).splitlines()
    device.write_files({"ntptime.py": shadow % "root"})
    assert "FROM root frozen" in device.run(timeout=30).splitlines()
