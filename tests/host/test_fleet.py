"""The fleet folder and the broker configuration it generates, against a real mosquitto: a device
reads only its fleet's, its group's and its own update topics, writes only its own status, and
is refused with another device's identity or once revoked."""
import json

import pytest

from mpota import mosquitto_conf
from mpota.broker import Connection
from mpota.cli import CliError, main
from mpota.fleet import Fleet
from mpota.localbroker import LocalBroker
from mpota.pki import PKI


@pytest.fixture
def fleet(tmp_path):
    f = Fleet.init(tmp_path / "fleet", "plant")
    f.add("dev-1", "north")
    f.add("dev-2", "south")
    return f


@pytest.fixture
def broker(fleet, tmp_path):
    conf_dir = tmp_path / "broker" / "conf"
    b = LocalBroker.from_config(tmp_path / "broker", lambda port, extra: mosquitto_conf.write(
        fleet, conf_dir, port=port, bind="127.0.0.1", extra=extra), pki=fleet.pki)
    b.regenerate = lambda: mosquitto_conf.write(Fleet(fleet.dir), conf_dir, port=b.port, bind="127.0.0.1",
                                                extra=b.local_lines())
    b.start()
    yield b
    b.stop()


def as_device(fleet, broker, device, key_of=None, timeout=10.0):
    pki = fleet.dir / "pki"
    return Connection(broker.host, broker.port, cafile=str(pki / "ca.crt"), certfile=str(pki / (device + ".crt")),
                      keyfile=str(pki / ((key_of or device) + ".key")), client_id=device, timeout=timeout)


def operator(fleet, broker):
    return fleet.connection("%s:%d" % (broker.host, broker.port))


TOPICS = {
    "ota/manifest/plant": b"fleet", "ota/manifest/plant/group/north": b"north",
    "ota/manifest/plant/group/south": b"south",
    "ota/manifest/plant/device/dev-1": b"pin-1", "ota/manifest/plant/device/dev-2": b"pin-2",
    "ota/rollout/plant/device/dev-1": b"note-1", "ota/rollout/plant/device/dev-2": b"note-2",
    "ota/rollout/plant/group/south": b"note-south", "ota/manifest/other": b"other fleet",
    "ota/fw/00112233aabbccdd/0": b"chunk", "ota/status/dev-2/state": b"dev-2 state",
}


def test_a_device_reads_only_its_fleet_group_and_own_topics(fleet, broker):
    with operator(fleet, broker) as op:
        op.wait([op.publish(t, p) for t, p in TOPICS.items()])
    with as_device(fleet, broker, "dev-1") as dev:
        seen = {}
        for topic in TOPICS:  # one at a time: a refused subscription must not hide the others
            seen.update(dev.retained([topic], settle=0.2, want=[topic]))
    assert seen == {t: TOPICS[t] for t in ("ota/manifest/plant", "ota/manifest/plant/group/north",
                                           "ota/manifest/plant/device/dev-1", "ota/rollout/plant/device/dev-1",
                                           "ota/fw/00112233aabbccdd/0")}


def test_a_device_writes_only_its_own_status(fleet, broker):
    with operator(fleet, broker) as op:
        op.wait([op.publish(t, p) for t, p in TOPICS.items()])
    forged = ["ota/status/dev-2/state", "ota/manifest/plant", "ota/manifest/plant/device/dev-1",
              "ota/rollout/plant/device/dev-1", "ota/fw/00112233aabbccdd/0", "ota/fw/00112233aabbccdd/manifest"]
    with as_device(fleet, broker, "dev-1") as dev:
        dev.wait([dev.publish(t, b"forged") for t in forged] + [dev.publish("ota/status/dev-1/state", b"mine")])
    with operator(fleet, broker) as op:
        stored = op.retained(["ota/#"], settle=0.3)
    assert stored["ota/status/dev-1/state"] == b"mine"
    assert all(stored.get(t) == TOPICS.get(t) for t in forged)  # nothing forged was kept
    assert sum("Denied PUBLISH from dev-1" in line for line in broker.dropped_lines()) == len(forged)


def test_a_certificate_from_another_ca_is_refused(fleet, broker, tmp_path):
    stranger = PKI(tmp_path / "stranger").issue("dev-1")  # the right name, the wrong issuer
    conn = Connection(broker.host, broker.port, cafile=str(fleet.dir / "pki" / "ca.crt"),
                      certfile=str(stranger["cert_file"]), keyfile=str(stranger["key_file"]), timeout=3)
    with pytest.raises(CliError):
        conn.__enter__()
    assert "certificate verify failed" in broker.log_text()


def test_a_device_using_another_devices_id_gets_nothing_of_it(fleet, broker, ota_device, tmp_path):
    """dev-1's credentials in a board configured as dev-2: the broker knows it as dev-1 (the
    certificate's CN), so dev-2's pin and status stay out of its reach."""
    from plugin_broker import make_release
    from mpota.signing import manifest_id

    image = b"\xa5" * 8192
    blob = make_release(image)
    rid = manifest_id(blob)
    with operator(fleet, broker) as op:
        op.wait([op.publish("ota/fw/%s/%d" % (rid, i), image[i * 4096:(i + 1) * 4096]) for i in range(2)])
        op.wait([op.publish("ota/manifest/plant/device/dev-2", blob)])
    staged = fleet.dir / "devices" / "dev-1" / "certs"
    run = ota_device({"port": broker.port, "device": "dev-2", "fleet": "plant", "data": str(tmp_path / "sink"),
                      "ca": str(staged / "ca.der"), "cert": str(staged / "device.der"),
                      "key": str(staged / "device.key.der"), "limit_ms": 4000}, heapsize="128K")
    code, out, err = run.wait(60)
    assert code == 3 and "TIMEOUT" in out and "COMPLETE" not in out, out + err
    with operator(fleet, broker) as op:
        assert op.retained(["ota/status/dev-2/#"], settle=0.3) == {}
    log = broker.log_text()
    assert "as dev-1 (" in log and "as dev-2 (" not in log  # client id and username: the certificate's CN
    assert any("Denied PUBLISH from dev-1" in line for line in broker.dropped_lines())


def test_a_revoked_device_is_refused_after_a_reload_and_the_others_are_not(fleet, broker, tmp_path):
    with as_device(fleet, broker, "dev-1"):
        pass
    kept = tmp_path / "kept.key"  # the board's own copy of its key: revocation cannot delete that one
    kept.write_bytes((fleet.dir / "pki" / "dev-1.key").read_bytes())
    assert main(["fleet", "revoke", "dev-1", "--fleet-dir", str(fleet.dir)]) == 0
    broker.regenerate()
    broker.reload()
    with pytest.raises(CliError):
        Connection(broker.host, broker.port, cafile=str(fleet.dir / "pki" / "ca.crt"),
                   certfile=str(fleet.dir / "pki" / "dev-1.crt"), keyfile=str(kept), client_id="dev-1",
                   timeout=3).__enter__()
    with as_device(fleet, broker, "dev-2"):
        pass
    acl = (broker.conf.parent / "acl").read_text()
    assert "user dev-1\ntopic deny #" in acl


def test_fleet_commands(tmp_path, capsys):
    folder = str(tmp_path / "f")
    trust = tmp_path / "trust.bin"
    trust.write_bytes(b"keys")
    assert main(["fleet", "init", "plant", "--fleet-dir", folder, "--broker", "mqtt.example:8883",
                 "--trust", str(trust)]) == 0
    assert main(["fleet", "add", "a-1", "a-2", "--group", "canary", "--fleet-dir", folder]) == 0
    assert main(["fleet", "add", "b-1", "--fleet-dir", folder]) == 0
    assert main(["fleet", "add", "a-1", "--fleet-dir", folder]) == 2  # already there
    assert main(["fleet", "add", "publisher", "--fleet-dir", folder]) == 2  # the operators' name
    assert main(["fleet", "add", "bad/id", "--fleet-dir", folder]) == 2
    staged = tmp_path / "f" / "devices" / "a-1"
    cfg = json.loads((staged / "ota_config.json").read_text())
    assert cfg["device_id"] == "a-1" and cfg["group"] == "canary" and cfg["fleet"] == "plant"
    assert cfg["broker"]["host"] == "mqtt.example" and cfg["broker"]["port"] == 8883
    assert (staged / ".ota" / "trust.bin").read_bytes() == b"keys"
    assert (staged / "certs" / "device.key.der").stat().st_mode & 0o777 == 0o600
    f = Fleet(folder)
    old = f.devices()["a-1"]["serial"]
    assert main(["fleet", "revoke", "a-1", "--fleet-dir", folder]) == 0
    assert not staged.exists()
    assert main(["fleet", "add", "a-1", "--group", "canary", "--fleet-dir", folder]) == 0  # new credentials
    f = Fleet(folder)
    assert f.devices()["a-1"]["serial"] != old and old in f.revoked_serials()
    assert f.groups() == {"canary": ["a-1", "a-2"]}
    capsys.readouterr()
    assert main(["fleet", "list", "--fleet-dir", folder]) == 0
    listing = capsys.readouterr().out
    assert "3 devices, 0 revoked" in listing and "b-1" in listing
    out = tmp_path / "conf"
    assert main(["fleet", "broker-config", "--out", str(out), "--port", "18883", "--fleet-dir", folder]) == 0
    conf = (out / "mosquitto.conf").read_text()
    for option in ("listener 18883", "require_certificate true", "use_identity_as_username true",
                   "use_username_as_clientid true",
                   "crlfile %s" % (out / "crl.pem"), "acl_file %s" % (out / "acl"), "persistence true"):
        assert option in conf
    acl = (out / "acl").read_text()
    assert "pattern write ota/status/%u/event" in acl and "topic read ota/manifest/plant/group/canary" in acl
    assert "pattern read ota/status" not in acl and "pattern write ota/manifest" not in acl
    assert main(["fleet", "list", "--fleet-dir", str(tmp_path / "nowhere")]) == 2
