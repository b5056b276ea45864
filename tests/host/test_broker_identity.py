"""The broker binds every client id to its certificate (against a real mosquitto with the generated
configuration), and the fleet's private keys are owner-only from their first byte, even when a run
is killed half-way (the real `mpota fleet` commands, watched and killed through strace)."""
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

import syscalls
from mpota import mosquitto_conf
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


KEY_NAME = re.compile(r"\.key(\.der)?(\.tmp)?$")  # a private key, or one on its way to its name


def holds_private_key(path):
    """By content, whatever the name: a whole private key (PEM or DER) or the start of a PEM one."""
    data = Path(path).read_bytes()
    if b"PRIVATE KEY" in data:
        return True
    try:
        serialization.load_der_private_key(data, None)
    except (ValueError, TypeError):
        return False
    return True


def loads_as_private_key(path):
    data = Path(path).read_bytes()
    load = serialization.load_pem_private_key if path.name.endswith(".key") else serialization.load_der_private_key
    try:
        load(data, None)
    except ValueError:
        return False
    return True


def files(*folders):
    return [p for folder in folders if folder.exists() for p in folder.rglob("*") if p.is_file()]


def assert_no_key_is_readable_by_others(*folders):
    """Every file named as a private key (leftovers included) or holding one is owner-only, and
    every file at a key's name is a whole key: an interrupted write never leaves a usable half."""
    for path in files(*folders):
        if KEY_NAME.search(path.name) or holds_private_key(path):
            assert mode(path) & 0o077 == 0, "%s is %o" % (path, mode(path))
        if KEY_NAME.search(path.name) and not path.name.endswith(".tmp"):
            assert loads_as_private_key(path), "%s is not a whole key" % path


def fleet_cli(*args):
    return ["-m", "mpota", "fleet"] + list(args)


def moved(argv, old, new):
    """The same command on a copy of its folders."""
    return [str(a).replace(str(old), str(new)) for a in argv]


def test_private_keys_are_owner_only_from_the_first_byte_whatever_the_umask(tmp_path):
    """`mpota fleet init`, `add` and `broker-config` run under strace with nothing masked: every
    file that receives a private key's bytes was created by that open, 0600 and O_EXCL, under a
    temporary name renamed over the key's name; nothing is chmod-ed; an older world-readable key
    at the name is replaced, its inode never written."""
    root, conf = tmp_path / "fleet", tmp_path / "conf"
    conf.mkdir()
    old = conf / "server.key"
    old.write_bytes(b"an older key, world readable")
    old.chmod(0o644)
    os.link(old, tmp_path / "old-inode")  # watches the old file's inode
    calls = []
    for i, argv in enumerate([fleet_cli("init", "plant", "--fleet-dir", root),
                              fleet_cli("add", "dev-1", "--fleet-dir", root),
                              fleet_cli("broker-config", "--fleet-dir", root, "--out", conf, "--port", 18883)]):
        proc, traced = syscalls.run_traced(argv, tmp_path / ("trace-%d" % i),
                                           "%file,write,fchmod,ftruncate", umask=0)
        assert proc.returncode == 0, proc.stderr
        calls += traced

    exclusive = set()  # key files created 0600 by the open itself
    for c in calls:
        if c.name in ("open", "openat", "creat") and c.result >= 0 and c.writes_file() and KEY_NAME.search(c.paths[0]):
            assert c.paths[0].endswith(".tmp"), "a key's own name opened for writing: %s" % c.paths[0]
            assert {"O_CREAT", "O_EXCL"} <= c.flags and c.mode == 0o600, (c.paths[0], c.flags, oct(c.mode or 0))
            exclusive.add(c.paths[0])
        if c.name in ("chmod", "fchmod", "fchmodat", "fchmodat2", "truncate", "ftruncate", "link", "linkat", "symlink",
                      "symlinkat"):
            assert not any(KEY_NAME.search(p) for p in c.paths), (c.name, c.paths)
        if c.name.startswith("rename") and KEY_NAME.search(c.paths[-1]):
            assert c.paths[0] in exclusive, "%s reached %s without an exclusive 0600 create" % (c.paths[0], c.paths[-1])
    assert len(exclusive) == 7  # ca, publisher, rollout, dev-1, the device's DER copy, broker, server

    keys = [p for p in files(root, conf) if holds_private_key(p)]
    assert len(keys) == 7 and {mode(k) for k in keys} == {0o600}
    writes = [c for c in calls if c.name == "write"]
    for key in keys:
        data = key.read_bytes()
        into = {c.paths[0] for c in writes if data in c.data}
        assert into and into <= exclusive, (key, into)  # nowhere else, stdout included
    assert (tmp_path / "old-inode").read_bytes() == b"an older key, world readable"
    assert os.stat(old).st_ino != os.stat(tmp_path / "old-inode").st_ino
    for folder in (root, root / "pki", root / "devices" / "dev-1", root / "devices" / "dev-1" / "certs"):
        assert mode(folder) == 0o700, folder


def test_a_kill_anywhere_leaves_no_key_readable_and_no_half_key_usable(tmp_path):
    """`mpota fleet init`, then `add`, then `broker-config`, each killed (SIGKILL, umask 0) on
    entering every write and rename of a key file and the call after it: every state a key passes
    through (an fsync changes nothing a killed process leaves behind: the page cache outlives it).
    An interrupted init is run again and completes, leaving no leftover."""
    base = tmp_path / "base"
    base.mkdir()
    root, conf = base / "fleet", base / "conf"
    steps = [fleet_cli("init", "plant", "--fleet-dir", root), fleet_cli("add", "dev-1", "--fleet-dir", root),
             fleet_cli("broker-config", "--fleet-dir", root, "--out", conf, "--port", 18883)]
    kills = 0
    for step, argv in enumerate(steps):
        scratch = tmp_path / ("count-%d" % step)
        shutil.copytree(base, scratch, symlinks=True)
        proc, calls = syscalls.run_traced(moved(argv, base, scratch), tmp_path / ("trace-%d" % step),
                                          "write,?rename,?renameat,?renameat2", umask=0)
        assert proc.returncode == 0, proc.stderr
        points = syscalls.kill_points(calls, lambda c: any(KEY_NAME.search(p) for p in c.paths))
        for call, n in points:
            work = tmp_path / ("kill-%d-%s-%d" % (step, call, n))
            shutil.copytree(base, work, symlinks=True)
            syscalls.kill_at(moved(argv, base, work), call, n, umask=0)
            kills += 1
            assert_no_key_is_readable_by_others(work)
            if step == 0 and not (work / "fleet" / "fleet.json").exists():
                again = subprocess.run([sys.executable] + moved(argv, base, work), capture_output=True, text=True,
                                       umask=0, timeout=60)
                assert again.returncode == 0, again.stderr
                assert_no_key_is_readable_by_others(work)
                assert not [p for p in files(work) if p.name.endswith(".tmp")]
            shutil.rmtree(work)
        shutil.rmtree(scratch)
        again = subprocess.run([sys.executable] + [str(a) for a in argv], capture_output=True, text=True, timeout=60)
        assert again.returncode == 0, again.stderr  # the next step starts from this one, done
    assert kills >= 3 * 7  # per key: created empty, written, renamed into place


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
