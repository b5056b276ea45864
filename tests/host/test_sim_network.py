"""The simulated board's `network.WLAN` answers as the ESP32 port's does (ports/esp32/network_wlan.c,
modnetwork_globals.h), and its socket layer refuses while the station has no link."""
import json
import threading
import time


def control(sim_snippet, **ap):
    path = sim_snippet.flash.parent / (sim_snippet.flash.name + ".net")
    path.write_text(json.dumps(ap))
    return path


def test_wlan_status_codes_errors_and_settings(sim_snippet):
    sim_snippet("pass")
    control(sim_snippet, ssid="home", password="pw", up=True, delay_ms=0)
    out = sim_snippet("""
import network, time
w = network.WLAN(network.STA_IF)
print(w is network.WLAN(network.WLAN.IF_STA), w.active(), w.status(), w.isconnected())
try:
    w.connect('home', 'pw')
except OSError as e:
    print('OSError', e)
print(network.STAT_IDLE, network.STAT_CONNECTING, network.STAT_GOT_IP, network.STAT_NO_AP_FOUND,
      network.STAT_WRONG_PASSWORD, network.STAT_BEACON_TIMEOUT, network.STAT_ASSOC_FAIL, network.STAT_HANDSHAKE_TIMEOUT)
w.active(True)
w.connect('home', 'wrong')
print(w.status())
time.sleep_ms(350)
print(w.status(), w.isconnected())
w.disconnect()
print(w.status())
w.connect('elsewhere', 'pw')
time.sleep_ms(350)
print(w.status())
w.config(reconnects=1, hostname='sensor')
w.connect('home', 'pw')
time.sleep_ms(100)
print(w.status(), w.isconnected(), w.ifconfig()[0] != '0.0.0.0', w.config('hostname'), network.hostname())
w.ifconfig(('10.0.0.7', 24, '10.0.0.1', '10.0.0.1'))
print(w.ifconfig(), w.ipconfig('addr4'), w.ipconfig('dhcp4'))
for bad in (lambda: w.config('mac', pm=0), lambda: w.config()):
    try:
        bad()
    except TypeError as e:
        print('TypeError', e)
try:
    w.config('nonsense')
except ValueError as e:
    print('ValueError', e)
try:
    network.WLAN(5)
except ValueError as e:
    print('ValueError', e)
print(len(w.config('mac')), network.WLAN(network.AP_IF).config('mac') != w.config('mac'))
""").stdout.splitlines()
    assert out[0] == "True False 1000 False"
    assert out[1] == "OSError Wifi Not Started"
    assert out[2] == "1000 1001 1010 201 202 200 203 204"
    assert out[3] == "1001"  # connecting
    assert out[4] == "202 False"  # WIFI_REASON_AUTH_FAIL is STAT_WRONG_PASSWORD
    assert out[5] == "1000"  # disconnect(): ASSOC_LEAVE reads as idle
    assert out[6] == "201"
    assert out[7] == "1010 True True sensor sensor"
    assert out[8] == "('10.0.0.7', '255.255.255.0', '10.0.0.1', '10.0.0.1') ('10.0.0.7', '255.255.255.0') False"
    assert out[9:12] == ["TypeError either pos or kw args are allowed", "TypeError can query only one param",
                         "ValueError unknown config param"]
    assert out[12] == "ValueError invalid WLAN interface identifier"
    assert out[13] == "6 True"


def test_socket_refused_without_a_link_and_a_drop_is_seen(sim_snippet):
    sim_snippet("pass")
    ap = control(sim_snippet, ssid="home", password="pw", up=False)
    code = """
import network, socket, time
w = network.WLAN(network.STA_IF)
w.active(True)
w.connect('home', 'pw')
time.sleep_ms(100)
try:
    socket.socket()
    print('socket')
except OSError as e:
    print('OSError', e.errno)
while not w.isconnected():
    time.sleep_ms(20)
s = socket.socket()
s.close()
print('up', w.status())
while w.isconnected():
    time.sleep_ms(20)
print('down', w.status())
"""
    result = {}
    worker = threading.Thread(target=lambda: result.update(out=sim_snippet(code, timeout=30).stdout))
    worker.start()
    time.sleep(1)  # the station searches for an AP that is off the air
    ap.write_text(json.dumps({"ssid": "home", "password": "pw", "up": True}))
    time.sleep(1)
    ap.write_text(json.dumps({"ssid": "home", "password": "pw", "up": False}))
    worker.join(40)
    assert result["out"].splitlines() == ["OSError 113", "up 1010", "down 1001"]


def test_ota_net_leaves_the_radio_alone_without_settings_and_keeps_asking_with_them(sim_snippet):
    sim_snippet("pass")
    air = sim_snippet.flash.parent / (sim_snippet.flash.name + ".air")
    control(sim_snippet, ssid="home", password="correct horse", up=False)
    out = sim_snippet("""
import network, time
from ota import events, net
seen = []
events.listen(lambda kind, fields: seen.append((kind, fields.get('link'), fields.get('status'))))
print(net.start(None), network.WLAN(network.STA_IF).active())
link = net.start({'ssid': 'home', 'password': 'correct horse', 'connect_timeout_s': 0.4, 'retry_max_s': 0.1})
print(network.WLAN(network.STA_IF).active())
t = time.ticks_ms()
while time.ticks_diff(time.ticks_ms(), t) < 2000:
    link.poll()
    time.sleep_ms(5)
print(link.up, link.attempts >= 3, seen[0])
""").stdout.splitlines()
    assert out[0] == "None False"
    assert out[1] == "True"
    assert out[2] == "False True ('link', 'down', 201)"
    assert air.read_text().count("connect home") >= 3
