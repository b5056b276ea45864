"""Wi-Fi on a simulated Pico W: the update service brings the station up from ota_config.json
(`ota.net`, as on ESP32) through an access point the test controls (tests/host/wifi_env.py),
over the rp2 simulator's CYW43 `network` module. A wrong password is reported with the Pico W's
own status (CYW43_LINK_BADAUTH, -3) and the port-independent failure name; the board's broker
connection goes through the AP only, so it really waits for the link."""
import json

import pytest

from e2e_env import Fleet
from pipeline_env import FW_HEALTHY
from rp2_env import BUNDLE_MQTT_APP, BundleSigner, bundle_board_files, rp2_device  # noqa: F401
from test_wifi import Events, link_up
from wifi_env import AccessPoint

WIFI = {"ssid": "home", "password": "correct horse", "connect_timeout_s": 0.5, "retry_max_s": 0.3,
        "hostname": "pico-w", "country": "GB"}


@pytest.fixture
def fleet(tmp_path, mosquitto, sim_device):
    fleet = Fleet(tmp_path, mosquitto(), sim_device, fleet="picos")
    fleet.signer = BundleSigner(tmp_path / "bundle-keys")
    return fleet


def test_service_brings_the_pico_w_online_from_config_after_a_wrong_password(fleet, rp2_device, tmp_path):
    (tmp_path / "pico0").mkdir()  # where rp2_device keeps the first board's flash; the AP's control file goes beside it
    ap = AccessPoint(tmp_path / "pico0" / "flash.bin", fleet.broker.port, password="changed by the owner")
    try:
        config = {"device_id": "pico-w1", "fleet": fleet.fleet, "wifi": WIFI,
                  "broker": {"host": "127.0.0.1", "port": ap.port, "tls": False, "keepalive": 10}}
        first = fleet.signer.bundle("1.0.0", FW_HEALTHY, counter=1, main=BUNDLE_MQTT_APP)
        pico = rp2_device(bundle_board_files(fleet.signer, first, wdt_ms=8000, confirm_within_ms=60000, config=config))
        pico.install_lib()
        fleet.boards["pico-w1"] = pico
        events = Events(fleet, "pico-w1")
        try:
            pico.start()
            ap.wait_requests(3)  # the AP refuses the board's password: attempt, give up, pause, again
            assert ap.accepted == 0, "a connection got through without a link"
            ap.set(password="correct horse")
            fleet.wait_state(lambda s: (s.get("pico-w1") or {}).get("online") is True, timeout=60)
            seen = events.wait_for(link_up)
        finally:
            events.close()
    finally:
        ap.close()
    downs = [e for e in seen if e.get("kind") == "link" and e.get("link") == "down"]
    assert downs and {(e["status"], e["failure"]) for e in downs} == {(-3, "auth_failed")}, seen
    assert seen[-1]["attempts"] >= 3 and "password" not in json.dumps(seen)  # nor the word, nor the secret
    assert ap.accepted >= 1
    assert "Traceback" not in pico.console, pico.console
