"""TLS and access control against a real mosquitto: server verification, per-device client
certificates (CN = device id) and the ACL of docs/PROTOCOL.md."""
import os

import pytest

from mpota.pki import PKI
from plugin_broker import make_release
from mpota import broker as hostbroker
from mpota.cmd_publish import publish_release

ACL = """user publisher
topic readwrite ota/#

pattern read ota/manifest/#
pattern read ota/fw/#
pattern write ota/status/%u/#
"""

CONNECT = """
import tls
from ota.mqtt import MQTTClient, MQTTError
def client(device, port, ca, cert=None, key=None, server_hostname="localhost"):
    ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = tls.CERT_REQUIRED
    ctx.load_verify_locations(open(ca, "rb").read())
    if cert:
        ctx.load_cert_chain(open(cert, "rb").read(), open(key, "rb").read())
    return MQTTClient(device, "127.0.0.1", port, ssl=ctx, server_hostname=server_hostname, timeout=5)
"""


def der_files(tmp_path, pki, leaf=None, name="dev"):
    """The CA (and a client certificate and key) as DER files, the form a board stores."""
    ca = tmp_path / (name + "-ca.der")
    ca.write_bytes(pki.ca_der)
    if leaf is None:
        return str(ca), None, None
    cert, key = tmp_path / (name + ".crt.der"), tmp_path / (name + ".key.der")
    cert.write_bytes(leaf["cert_der"])
    key.write_bytes(leaf["key_der"])
    return str(ca), str(cert), str(key)


@pytest.fixture
def secured(mosquitto):
    """A broker that requires client certificates, with the ACL; returns (broker, publisher connection)."""
    mq = mosquitto(require_certificate=True, acl=ACL)
    pub = mq.client_cert("publisher")
    conn = hostbroker.Connection(mq.host, mq.port, cafile=str(mq.pki.ca_file), certfile=str(pub["cert_file"]),
                                 keyfile=str(pub["key_file"]))
    with conn:
        yield mq, conn


def test_release_over_tls_with_client_certificate(secured, ota_device, tmp_path):
    mq, conn = secured
    image = os.urandom(64 * 1024)
    rid = publish_release(conn, make_release(image, chunk_size=4096), image, ["ota/manifest/esp32-generic"])
    ca, cert, key = der_files(tmp_path, mq.pki, mq.client_cert("dev-a"))
    data = tmp_path / "slot.bin"
    rc, out, err = ota_device({"port": mq.port, "device": "dev-a", "fleet": "esp32-generic", "data": str(data),
                               "ca": ca, "cert": cert, "key": key}, heapsize="64K").wait()
    assert rc == 0 and out.startswith("COMPLETE " + rid), out + err
    assert data.read_bytes() == image
    assert b'"progress": 100' in conn.retained(["ota/status/dev-a/state"])["ota/status/dev-a/state"]
    assert not mq.dropped_lines()


def test_wrong_ca_refuses_to_connect(secured, mp, device_lib, tmp_path):
    mq, _ = secured
    stranger = PKI(tmp_path / "other")
    ca, cert, key = der_files(tmp_path, stranger, mq.client_cert("dev-a"))
    out = mp(CONNECT + """
c = client("dev-a", %d, %r, %r, %r)
try:
    c.connect()
    print("CONNECTED")
except MQTTError as e:
    print("REFUSED", e.reason)
""" % (mq.port, ca, cert, key), path=(device_lib,)).stdout
    assert out.strip() == "REFUSED tls"
    assert "dev-a" not in mq.log_text()


def test_broker_refuses_a_device_without_certificate(secured, mp, device_lib, tmp_path):
    mq, _ = secured
    ca, _, _ = der_files(tmp_path, mq.pki)
    out = mp(CONNECT + """
c = client("dev-a", %d, %r)
try:
    c.connect()
    print("CONNECTED")
except (OSError, MQTTError) as e:
    print("REFUSED")
""" % (mq.port, ca), path=(device_lib,)).stdout
    assert out.strip() == "REFUSED"


def test_acl_keeps_a_device_to_its_own_status(secured, mp, device_lib, tmp_path):
    mq, conn = secured
    image = os.urandom(8192)
    blob = make_release(image, chunk_size=4096)
    rid = publish_release(conn, blob, image, ["ota/manifest/esp32-generic"])
    conn.wait([conn.publish("ota/status/dev-b/state", b'{"state": "idle"}')])
    ca, cert, key = der_files(tmp_path, mq.pki, mq.client_cert("dev-a"))
    forbidden = ["ota/status/dev-b/state", "ota/fw/%s/0" % rid, "ota/fw/%s/manifest" % rid,
                 "ota/manifest/esp32-generic", "ota/manifest/esp32-generic/device/dev-a"]
    mp(CONNECT + """
c = client("dev-a", %d, %r, %r, %r)
c.connect()
for topic in %r:
    c.publish(topic, b"forged", True, 1)
c.publish("ota/status/dev-a/state", b'{"state": "idle"}', True, 1)
c.disconnect()
""" % (mq.port, ca, cert, key, forbidden), path=(device_lib,))
    log = mq.log_text()
    for topic in forbidden:
        assert any("Denied PUBLISH from dev-a" in line and "'%s'" % topic in line for line in log.splitlines()), topic
    stored = conn.retained(forbidden + ["ota/status/dev-a/state"])
    assert stored["ota/status/dev-b/state"] == b'{"state": "idle"}'
    assert stored["ota/fw/%s/0" % rid] == image[:4096]
    assert stored["ota/fw/%s/manifest" % rid] == blob == stored["ota/manifest/esp32-generic"]
    assert "ota/manifest/esp32-generic/device/dev-a" not in stored
    assert stored["ota/status/dev-a/state"] == b'{"state": "idle"}'


@pytest.fixture(params=["mosquitto", "rabbitmq"])
def tls_broker(request):
    """A broker with a TLS listener (no client certificates): each kind in turn."""
    return request.getfixturevalue(request.param)(tls=True)


def test_server_name_is_checked(tls_broker, mp, device_lib, tmp_path):
    mq = tls_broker
    ca, _, _ = der_files(tmp_path, mq.pki)
    out = mp(CONNECT + """
for name in ("localhost", "broker.example"):
    c = client("dev-a", %d, %r, server_hostname=name)
    try:
        c.connect()
        print(name, "connected")
        c.disconnect()
    except MQTTError as e:
        print(name, e.reason)
""" % (mq.port, ca), path=(device_lib,)).stdout
    assert out.split("\n")[:2] == ["localhost connected", "broker.example tls"]
