"""The broker binds every client id to its certificate, and the fleet's private keys are owner-only
from their first byte: against a real mosquitto with the generated configuration."""
import os
import stat
import time

import pytest

from mpota import mosquitto_conf, pki
from mpota.broker import Connection
from mpota.fleet import Fleet
from mpota.localbroker import LocalBroker


@pytest.fixture
def fleet(tmp_path):
    f = Fleet.init(tmp_path / "fleet", "plant")
    f.add("dev-1")
    f.add("dev-2")
    return f


@pytest.fixture
def broker(fleet, tmp_path):
    b = LocalBroker.from_config(tmp_path / "broker", lambda port, extra: mosquitto_conf.write(
        fleet, tmp_path / "broker" / "conf", port=port, bind="127.0.0.1", extra=extra), pki=fleet.pki)
    b.start()
    yield b
    b.stop()


def device(fleet, broker, cert, client_id):
    folder = fleet.dir / "pki"
    return Connection(broker.host, broker.port, cafile=str(folder / "ca.crt"), certfile=str(folder / (cert + ".crt")),
                      keyfile=str(folder / (cert + ".key")), client_id=client_id, timeout=5)


def test_a_device_certificate_cannot_borrow_another_devices_client_id(fleet, broker):
    with device(fleet, broker, "dev-2", "dev-2") as victim:
        for _ in range(3):
            with device(fleet, broker, "dev-1", "dev-2") as thief:
                time.sleep(0.3)
                assert thief.client.is_connected()
                assert victim.client.is_connected()  # not kicked off
        victim.wait([victim.publish("ota/status/dev-2/state", b"still here")])
    log = broker.log_text()
    assert "as dev-2 (" in log
    connects = [line for line in log.splitlines() if "New client connected" in line and "u'dev-1'" in line]
    assert len(connects) == 3 and all(" as dev-1 (" in line for line in connects)  # the id is the certificate's
    assert "already connected, closing old connection" not in log


def test_without_the_binding_the_same_attack_kicks_the_victim_off(fleet, tmp_path):
    """The control: the same configuration minus use_username_as_clientid, as generated before."""
    def unbound(port, extra):
        conf = mosquitto_conf.write(fleet, tmp_path / "b2" / "conf", port=port, bind="127.0.0.1", extra=extra)
        conf.write_text(conf.read_text().replace("use_username_as_clientid true\n", ""))
        return conf

    b = LocalBroker.from_config(tmp_path / "b2", unbound, pki=fleet.pki).start()
    try:
        with device(fleet, b, "dev-2", "dev-2") as victim:
            with device(fleet, b, "dev-1", "dev-2"):
                deadline = time.monotonic() + 5
                while victim.client.is_connected() and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert not victim.client.is_connected()
        assert "already connected, closing old connection" in b.log_text()
    finally:
        b.stop()


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def private_files(folder):
    return [p for p in folder.rglob("*") if p.is_file() and (p.name.endswith(".key") or p.name.endswith(".key.der"))]


def test_private_keys_are_owner_only_from_the_first_byte_whatever_the_umask(tmp_path, monkeypatch):
    chmods = []
    monkeypatch.setattr(os, "chmod", lambda *a, **k: chmods.append(a))
    monkeypatch.setattr(type(tmp_path), "chmod", lambda self, *a, **k: chmods.append((self,) + a))
    created = []
    real_open = os.open

    def watch_open(path, flags, mode=0o777, *a, **k):
        fd = real_open(path, flags, mode, *a, **k)
        if str(path).endswith((".key.tmp", ".key.der.tmp")):
            created.append(stat.S_IMODE(os.fstat(fd).st_mode))  # the mode the first byte lands in
        return fd

    monkeypatch.setattr(os, "open", watch_open)
    old = os.umask(0)  # the worst case: nothing masked
    try:
        f = Fleet.init(tmp_path / "fleet", "plant")
        f.add("dev-1")
        (tmp_path / "conf").mkdir()
        (tmp_path / "conf" / "server.key").write_bytes(b"an older key, world readable")
        mosquitto_conf.write(f, tmp_path / "conf", port=18883)  # server.crt is absent: a new server key
    finally:
        os.umask(old)
    keys = private_files(tmp_path / "fleet") + [tmp_path / "conf" / "server.key"]
    assert len(keys) >= 4  # ca.key, publisher.key, dev-1.key, devices/dev-1/certs/device.key.der, server.key
    assert {mode(k) for k in keys} == {0o600}
    assert created and set(created) == {0o600}
    assert not [c for c in chmods if ".key" in str(c[0])]  # public files may be opened up; keys never touched
    for folder in (tmp_path / "fleet", tmp_path / "fleet" / "pki", tmp_path / "fleet" / "devices" / "dev-1",
                   tmp_path / "fleet" / "devices" / "dev-1" / "certs"):
        assert mode(folder) == 0o700, folder


def test_an_interrupted_key_write_leaves_nothing_readable(tmp_path, monkeypatch):
    def fail(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", fail)
    target = tmp_path / "k.key"
    target.write_bytes(b"older key")
    os.chmod(target, 0o644)
    with pytest.raises(KeyboardInterrupt):
        pki.write_private(target, b"secret")
    left = tmp_path / "k.key.tmp"
    assert left.exists() and mode(left) == 0o600
    monkeypatch.undo()
    pki.write_private(target, b"secret")  # the next run replaces both
    assert mode(target) == 0o600 and target.read_bytes() == b"secret" and not left.exists()


def test_a_revoked_devices_private_key_is_gone_from_the_fleet_folder(fleet):
    key_pem = (fleet.dir / "pki" / "dev-1.key").read_bytes()
    key_der = (fleet.dir / "devices" / "dev-1" / "certs" / "device.key.der").read_bytes()
    fleet.revoke("dev-1")
    for path in fleet.dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert key_pem not in data and key_der not in data, path
    assert (fleet.dir / "pki" / "dev-2.key").exists()  # the others keep theirs
    assert (fleet.dir / "pki" / "dev-1.crt").exists()  # the certificate stays: it is on the CRL


def test_the_rollout_runner_and_an_operator_keep_their_sessions_side_by_side(fleet, broker):
    address = "%s:%d" % (broker.host, broker.port)
    with fleet.connection(address, identity="rollout") as runner:
        with fleet.connection(address) as operator:
            operator.wait([operator.publish("ota/manifest/plant", b"from the operator")])
            time.sleep(0.3)
            assert runner.client.is_connected() and operator.client.is_connected()
        runner.wait([runner.publish("ota/rollout/plant", b"from the runner")])
        assert runner.retained(["ota/manifest/plant", "ota/rollout/plant"], settle=0.3) == {
            "ota/manifest/plant": b"from the operator", "ota/rollout/plant": b"from the runner"}
    assert "already connected, closing old connection" not in broker.log_text()
