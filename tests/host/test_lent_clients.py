"""An application's own MQTT client lent to the OTA service (`ota.service.start(client=...)`):
umqtt.simple, frozen in the firmware as on ESP32_GENERIC (micropython-lib's, from the package index
at set-up), carries the application's messages and a whole update (download, reboot, trial,
confirmation) over one connection; umqtt.robust is refused, with the reason."""
import mpunix
from e2e_env import Fleet
from mpunix import ROOT
from test_frozen_modules import frozen_umqtt  # noqa: F401  (fixture)


def test_umqtt_simple_lent_to_the_service_updates_and_serves_the_app(tmp_path, mosquitto, sim_device, frozen_umqtt):  # noqa: F811
    fleet = Fleet(tmp_path, mosquitto(), sim_device)  # umqtt.simple 1.3.4 speaks plain TCP only
    board = fleet.board("lent-1", app="lent_umqtt.py")  # the firmware's frozen umqtt, no copy in /lib
    board.start()
    board.wait_for("^APP connected")
    fleet.wait_state(lambda s: (s.get("lent-1") or {}).get("online") is True)
    with fleet.connection() as conn:
        conn.client.subscribe("app/reply", 1)
        conn.wait([conn.publish("app/cmd", b"ping", retain=False)])
        reply = conn.messages.get(timeout=10)
    assert (reply.topic, reply.payload) == ("app/reply", b"ping")  # the application's traffic
    board.wait_for("^APP message app/cmd ping")
    blob, image = fleet.signer.release("2.0.0", {"fw": "def start():\n    pass\n\ndef healthy():\n    return True\n"},
                                       counter=2, size=64 * 1024)
    assert fleet.publish(blob, image).returncode == 0
    states = fleet.wait_state(lambda s: (s.get("lent-1") or {}).get("version") == "2.0.0"
                              and s["lent-1"].get("state") == "idle", timeout=180)
    assert states["lent-1"]["slot"] == "ota_1" and states["lent-1"]["reason"] is None
    assert board.read_partition("ota_1")[:len(image)] == image
    assert board.console.count("APP connected") >= 2  # subscribed again after the reboot
    connects = [line for line in fleet.broker.log_text().splitlines() if "New client connected" in line and " as lent-1 " in line]
    assert len(connects) >= 2, connects  # one connection per boot, shared with the application
    board.power_cut()
    assert "umqtt" not in board.listdir("/") + board.listdir("/lib")  # the firmware's copy served


ROBUST = """
from umqtt.robust import MQTTClient
from ota.adapter import Lent, UnsupportedClient
try:
    Lent(MQTTClient("dev", "127.0.0.1"))
except UnsupportedClient as exc:
    print("REFUSED", exc.reason, exc.detail)
"""


def test_umqtt_robust_is_refused_with_the_reason(frozen_umqtt):  # noqa: F811
    out = mpunix.run(ROBUST, path=(ROOT / "lib", frozen_umqtt)).stdout
    assert out.startswith("REFUSED unsupported_client ") and "persistent session" in out and "umqtt.simple" in out


def test_asyncio_service_updates_beside_the_application(tmp_path, mosquitto, sim_device):
    """`await ota.aservice.run(...)` on a simulated board, whose asyncio is the unix build's frozen
    one: download, reboot, trial and confirmation while the application's task keeps running."""
    fleet = Fleet(tmp_path, mosquitto(tls=True), sim_device)
    board = fleet.board("async-1", app="async_app.py")
    board.start()
    board.wait_for("^ASYNC application running")
    fleet.wait_state(lambda s: (s.get("async-1") or {}).get("online") is True)
    blob, image = fleet.signer.release("2.0.0", {"fw": "def start():\n    pass\n\ndef healthy():\n    return True\n"},
                                       counter=2, size=64 * 1024)
    assert fleet.publish(blob, image).returncode == 0
    states = fleet.wait_state(lambda s: (s.get("async-1") or {}).get("version") == "2.0.0"
                              and s["async-1"].get("state") == "idle", timeout=180)
    assert states["async-1"]["slot"] == "ota_1" and states["async-1"]["reason"] is None
    # the application runs again after the reboot (its line may follow the confirmation)
    board.wait_for(r"^\[sim\] boot 2 .*(?:\n.*)*?\nASYNC application running")
    assert [b["version"] for b in board.boot_log()][:2] == ["1.0.0", "2.0.0"]


LENT_TLS = """
import tls
from ota.adapter import Lent, _NoDelay
from ota.mqtt import MQTTClient
ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
ctx.verify_mode = tls.CERT_REQUIRED
ctx.load_verify_locations(open(%(ca)r, "rb").read())
client = MQTTClient("lent-tls", "127.0.0.1", %(port)d, ssl=ctx, server_hostname="localhost", timeout=5)
got = []
link = Lent(client, on_message=lambda t, m, *r: got.append((t, bytes(m))),
            on_connect=lambda c: c.subscribe(b"app/in", 1))
link.set_callback(lambda topic, msg: topic.startswith(b"ota/"))  # the transport keeps OTA topics
print("wrapped", isinstance(client.ssl, _NoDelay))
link.connect()
link.publish(b"ota/x", b"for the transport", True, 1)
link.subscribe(b"ota/x", 1)  # its retained message comes back while subscribe() waits for SUBACK
link.publish(b"app/in", b"for the app", False, 1)
while link.wait_msg(300) is not None:
    pass
print("handled", link.handled)
print(got)
link.disconnect()
"""


def test_a_lent_tls_client_connects_through_the_nodelay_wrapper(mosquitto, tmp_path):
    """The service's wrapper around the client's SSL context sets TCP_NODELAY on the raw socket
    and still completes a verified TLS handshake; the application's messages reach it, OTA
    topics do not."""
    mq = mosquitto(tls=True)
    (tmp_path / "ca.der").write_bytes(mq.pki.ca_der)
    out = mpunix.run(LENT_TLS % {"ca": str(tmp_path / "ca.der"), "port": mq.port}, path=(ROOT / "lib",), heapsize="200K").stdout
    assert out.splitlines() == ["wrapped True", "handled 2", "[(b'app/in', b'for the app')]"], out
