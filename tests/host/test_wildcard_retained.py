"""The host tools on a broker that sends no retained message to a wildcard subscription
(RabbitMQ's MQTT plugin), beside one that does (mosquitto): they find out which kind they talk to,
read a fleet folder's topics one by one on the first kind, and refuse, before changing anything,
where they would otherwise read nothing and act on it (prune, timestamp)."""
import json
import os
import time
import uuid

import pytest

from plugin_broker import make_release
from mpota import broker as hostbroker
from mpota import rollout, signing
from mpota.cli import main
from mpota.fleet import Fleet


def _root():
    return "w" + uuid.uuid4().hex[:8]  # the RabbitMQ node is shared by the session: a root per test


def _fleet(tmp_path, root):
    f = Fleet.init(tmp_path / "fleet", "plant", root=root)
    f.add("dev-1", group="canary")
    f.add("dev-2")
    return f


def _args(mq, root):
    return ["--broker", "127.0.0.1:%d" % mq.port, "--root", root]


def _publish(tmp_path, mq, root, *target):
    image = os.urandom(3000)
    blob = make_release(image, chunk_size=1024)
    (tmp_path / "app.bin").write_bytes(image)
    (tmp_path / "app.manifest").write_bytes(blob)
    assert main(["publish", str(tmp_path / "app.manifest"), str(tmp_path / "app.bin"), "--quiet", *target,
                 *_args(mq, root)]) == 0
    return blob


def _held(mq, topics):
    with hostbroker.Connection(mq.host, mq.port) as conn:
        return conn.retained(topics, settle=0.3)


def test_the_probe_tells_the_brokers_apart_and_leaves_nothing_behind(mosquitto, rabbitmq):
    for mq, expected in ((mosquitto(), True), (rabbitmq(), False)):
        root = _root()
        with hostbroker.Connection(mq.host, mq.port) as conn:
            assert conn.wildcard_retained(root) is expected
            probe = "%s/probe/%s" % (root, conn.client_id)
        assert _held(mq, [probe]) == {}  # cleared again


def test_a_probe_clears_what_tools_that_died_mid_probe_left_and_keeps_a_running_ones(mosquitto):
    mq, root = mosquitto(), _root()
    now = int(time.time())
    left = {"%s/probe/old" % root: b"%d" % (now - hostbroker.PROBE_STALE_S - 5), "%s/probe/unreadable" % root: b"1x",
            "%s/probe/running" % root: b"%d" % (now - 5)}
    with hostbroker.Connection(mq.host, mq.port) as conn:
        conn.wait([conn.publish(topic, payload) for topic, payload in left.items()])
    with hostbroker.Connection(mq.host, mq.port) as conn:
        assert conn.wildcard_retained(root)
    assert _held(mq, list(left)) == {"%s/probe/running" % root: b"%d" % (now - 5)}


def test_prune_refuses_on_rabbitmq_without_the_fleet_then_checks_its_topics(rabbitmq, tmp_path, capsys):
    mq, root = rabbitmq(), _root()
    f = _fleet(tmp_path, root)
    blob = _publish(tmp_path, mq, root, "--fleet", "plant", "--group", "canary")
    rid = signing.manifest_id(blob)
    chunks = [hostbroker.chunk_topic(root, rid, i) for i in range(5)]  # 3 chunks, the table's index and page
    capsys.readouterr()

    assert main(["prune", rid, *_args(mq, root)]) == 2  # it cannot see the targets: nothing is cleared
    assert "wildcard" in capsys.readouterr().err
    assert sorted(_held(mq, chunks)) == chunks

    fleet_dir = ["--fleet-dir", str(f.dir)]
    assert main(["prune", rid, *fleet_dir, *_args(mq, root)]) == 1  # the group's topic still offers it
    assert "%s/manifest/plant/group/canary" % root in capsys.readouterr().err
    assert main(["prune", rid, "--untarget", *fleet_dir, *_args(mq, root)]) == 0
    assert "7 retained messages cleared" in capsys.readouterr().out
    assert _held(mq, chunks + [hostbroker.release_manifest_topic(root, rid),
                               hostbroker.target_topic(root, "plant", group="canary")]) == {}


def test_prune_finds_the_chunks_of_a_release_whose_manifest_is_gone_by_number(rabbitmq, tmp_path, capsys):
    mq, root = rabbitmq(), _root()
    f = _fleet(tmp_path, root)
    blob = _publish(tmp_path, mq, root, "--no-target")
    rid = signing.manifest_id(blob)
    with hostbroker.Connection(mq.host, mq.port) as conn:
        conn.wait([conn.publish(hostbroker.release_manifest_topic(root, rid), b"")])
    assert main(["prune", rid, "--fleet-dir", str(f.dir), *_args(mq, root)]) == 0
    assert "5 retained messages cleared" in capsys.readouterr().out
    assert _held(mq, [hostbroker.chunk_topic(root, rid, i) for i in range(5)]) == {}


def test_status_reads_the_fleet_devices_one_by_one_on_rabbitmq(rabbitmq, tmp_path, capsys):
    mq, root = rabbitmq(), _root()
    f = _fleet(tmp_path, root)
    with hostbroker.Connection(mq.host, mq.port) as conn:
        conn.wait([conn.publish(hostbroker.status_topic(root, "dev-1", "state"),
                                json.dumps({"device": "dev-1", "state": "idle", "version": "1.0.0"}).encode()),
                   conn.publish(hostbroker.status_topic(root, "dev-1", "online"), b"1")])
    capsys.readouterr()
    assert main(["status", "--json", "--wait", "0.3", *_args(mq, root)]) == 2
    assert "--fleet-dir" in capsys.readouterr().err
    assert main(["status", "--json", "--wait", "0.3", "--fleet-dir", str(f.dir), *_args(mq, root)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows["dev-1"]["online"] is True and rows["dev-1"]["version"] == "1.0.0" and "dev-2" not in rows
    assert main(["status", "--json", "--fleet-dir", str(f.dir), *_args(mq, "other")]) == 2  # not the fleet's root


def test_a_rollout_runner_catches_up_on_retained_states_on_rabbitmq(rabbitmq, tmp_path):
    mq, root = rabbitmq(), _root()
    f = _fleet(tmp_path, root)
    blob = make_release(b"x" * 3000)
    store = rollout.Store(f)
    store.create(rollout.new_plan("r1", f, blob, ["dev-1", "dev-2"]), blob)
    state = {"device": "dev-1", "state": "idle", "version": "1.0.0", "rollout": "r1"}
    with hostbroker.Connection(mq.host, mq.port) as conn:
        conn.wait([conn.publish(hostbroker.status_topic(root, "dev-1", "state"), json.dumps(state).encode())])
    with hostbroker.Connection(mq.host, mq.port) as conn:
        runner = rollout.Runner(f, "r1", conn)
        runner.listen()
        runner._drain(1.0)
    assert ("state", "dev-1", state) in runner.reports


@pytest.mark.parametrize("broker_name", ["mosquitto", "rabbitmq"])
def test_timestamp_refresh_never_reports_success_for_topics_it_cannot_see(broker_name, request, tmp_path):
    from releases import Signer

    mq, root = request.getfixturevalue(broker_name)(), _root()
    f = _fleet(tmp_path, root)
    signer = Signer(tmp_path / "keys")
    pem = signer.add_timestamp_key()
    blob, _ = signer.release_of(b"x" * 3000)
    topic = hostbroker.target_topic(root, "plant", device="dev-2")
    with hostbroker.Connection(mq.host, mq.port) as conn:
        conn.wait([conn.publish(topic, blob)])
    stamp = ["timestamp", "--timestamp-key", str(pem), *_args(mq, root)]
    if broker_name == "rabbitmq":
        assert main(stamp) == 2  # without the fleet's topics it would refresh nothing
        assert signing.split_message(_held(mq, [topic])[topic])[1] == b""
        stamp += ["--fleet-dir", str(f.dir)]
    assert main(stamp) == 0
    manifest, record = signing.split_message(_held(mq, [topic])[topic])
    assert manifest == blob and record
