"""`mpota publish`, `prune` and `status` against a real mosquitto."""
import hashlib
import json
import os

from plugin_broker import make_release
from mpota import broker as hostbroker
from mpota import signing
from mpota.cli import main


def files(tmp_path, image, blob):
    (tmp_path / "app.bin").write_bytes(image)
    (tmp_path / "app.manifest").write_bytes(blob)
    return str(tmp_path / "app.manifest"), str(tmp_path / "app.bin")


def everything(mq):
    with hostbroker.Connection(mq.host, mq.port) as conn:
        return conn.retained(["ota/#"], settle=0.3)


def test_publish_uploads_chunks_then_manifests_with_progress(mosquitto, tmp_path, capsys):
    mq = mosquitto()
    image = os.urandom(10_000)
    blob = make_release(image, chunk_size=1024)
    manifest, app = files(tmp_path, image, blob)
    assert main(["publish", manifest, app, "--fleet", "esp32-generic", "--group", "canary",
                 "--broker", "127.0.0.1:%d" % mq.port]) == 0
    out, err = capsys.readouterr()
    rid = out.split()[2]
    assert "12/12" in err  # the progress bar reached the end: 10 chunks, the table's index and page
    stored = everything(mq)
    assert stored.pop("ota/manifest/esp32-generic/group/canary") == blob
    assert stored.pop("ota/fw/%s/manifest" % rid) == blob
    assert b"".join(stored.pop("ota/fw/%s/%d" % (rid, i)) for i in range(10)) == image
    index, page = stored.pop("ota/fw/%s/10" % rid), stored.pop("ota/fw/%s/11" % rid)
    assert hashlib.sha256(index).digest() == signing.parse_blob(blob)[2]["table_root"]
    assert index == hashlib.sha256(page).digest()
    assert page == b"".join(hashlib.sha256(image[i:i + 1024]).digest() for i in range(0, 10_000, 1024))
    assert stored == {}
    log = mq.log_text()
    assert log.index("'ota/fw/%s/11'" % rid) < log.index("'ota/fw/%s/manifest'" % rid) < log.index("group/canary'")


def test_publish_refuses_an_image_the_manifest_does_not_sign(mosquitto, tmp_path, capsys):
    mq = mosquitto()
    image = os.urandom(5000)
    manifest, app = files(tmp_path, image[:-1] + bytes([image[-1] ^ 1]), make_release(image))
    assert main(["publish", manifest, app, "--fleet", "f", "--broker", "127.0.0.1:%d" % mq.port]) == 2
    assert "does not match the manifest" in capsys.readouterr().err
    assert everything(mq) == {}


def test_publish_over_tls_with_client_certificate(mosquitto, tmp_path, capsys):
    mq = mosquitto(require_certificate=True, acl="user publisher\ntopic readwrite ota/#\n")
    pub = mq.client_cert("publisher")
    image = os.urandom(5000)
    manifest, app = files(tmp_path, image, make_release(image))
    tls = ["--broker", "localhost:%d" % mq.port, "--cafile", str(mq.pki.ca_file)]
    assert main(["publish", manifest, app, "--fleet", "f", "--quiet", *tls, "--cert", str(pub["cert_file"]),
                 "--key", str(pub["key_file"])]) == 0
    other = mq.client_cert("intruder")  # a valid certificate the ACL gives nothing
    assert main(["publish", manifest, app, "--fleet", "f", "--quiet", *tls, "--cert", str(other["cert_file"]),
                 "--key", str(other["key_file"])]) == 2
    assert "does the ACL let this user write there" in capsys.readouterr().err


def test_connection_problems_are_one_line_errors(mosquitto, tmp_path, capsys):
    mq = mosquitto(users={"publisher": "right"})
    image = os.urandom(5000)
    manifest, app = files(tmp_path, image, make_release(image))
    assert main(["publish", manifest, app, "--fleet", "f", "--quiet", "--broker", "127.0.0.1:%d" % mq.port,
                 "--username", "publisher", "--password", "wrong"]) == 2
    assert "refused the connection" in capsys.readouterr().err
    mq.stop()
    assert main(["status", "--once", "--broker", "127.0.0.1:%d" % mq.port]) == 2
    assert "cannot reach the broker" in capsys.readouterr().err


def test_prune_refuses_while_offered_then_clears_everything(mosquitto, tmp_path, capsys):
    mq = mosquitto()
    broker = ["--broker", "127.0.0.1:%d" % mq.port]
    image = os.urandom(6000)
    manifest, app = files(tmp_path, image, make_release(image, chunk_size=1024))
    assert main(["publish", manifest, app, "--fleet", "f", "--device", "dev-1", "--quiet", *broker]) == 0
    rid = capsys.readouterr().out.split()[2]
    assert main(["prune", rid, *broker]) == 1
    assert "still offered on ota/manifest/f/device/dev-1" in capsys.readouterr().err
    assert len(everything(mq)) == 6 + 2 + 1 + 1  # chunks, digest table (index, page), manifests
    assert main(["prune", "--fleet", "f", "--device", "dev-1", *broker]) == 0  # unpin the device
    assert main(["prune", rid, *broker]) == 0
    assert everything(mq) == {}
    assert main(["publish", manifest, app, "--fleet", "f", "--quiet", *broker]) == 0
    assert main(["prune", rid, "--untarget", *broker]) == 0
    assert "pruned release %s (10 retained messages cleared)" % rid in capsys.readouterr().out
    assert everything(mq) == {}


def test_status_table_from_retained_states(mosquitto, capsys):
    mq = mosquitto()
    with hostbroker.Connection(mq.host, mq.port) as conn:
        conn.wait([
            conn.publish("ota/status/dev-1/state", json.dumps({"device": "dev-1", "state": "downloading", "version": "1.0.0",
                                                                "slot": 0, "release": "ab" * 8, "progress": 35,
                                                                "reason": None, "encoding": "delta"})),
            conn.publish("ota/status/dev-1/online", b"1"),
            conn.publish("ota/status/dev-2/state", json.dumps({"device": "dev-2", "state": "idle", "version": "0.9.0",
                                                                "reason": "bad_signature"})),
            conn.publish("ota/status/dev-2/online", b"0"),
        ])
    assert main(["status", "--once", "--wait", "0.3", "--broker", "127.0.0.1:%d" % mq.port]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["device", "online", "state", "version", "slot", "progress", "release", "target",
                                "encoding", "reason"]
    assert lines[1].split() == ["dev-1", "yes", "downloading", "1.0.0", "0", "35%", "ab" * 8, "-", "delta", "-"]
    assert lines[2].split() == ["dev-2", "NO", "idle", "0.9.0", "-", "-", "-", "-", "-", "bad_signature"]
    assert main(["status", "--json", "--wait", "0.3", "--broker", "127.0.0.1:%d" % mq.port]) == 0
    assert json.loads(capsys.readouterr().out)["dev-2"]["online"] is False


def test_publish_and_prune_are_recorded_in_the_fleet_audit_log(mosquitto, tmp_path, capsys):
    from mpota.audit import AuditLog

    mq = mosquitto()
    broker = ["--broker", "127.0.0.1:%d" % mq.port]
    image = os.urandom(3000)
    manifest, app = files(tmp_path, image, make_release(image, chunk_size=1024))
    audit = ["--audit-dir", str(tmp_path)]
    assert main(["publish", manifest, app, "--fleet", "f", "--quiet", *audit, *broker]) == 0
    rid = capsys.readouterr().out.split()[2]
    assert main(["prune", rid, "--untarget", *audit, *broker]) == 0
    assert main(["publish", manifest, app, "--no-target", "--quiet", *broker]) == 0  # no fleet folder: no record
    log = [(e["actor"], e["action"], e["release"], e["outcome"]) for e in AuditLog(tmp_path).entries()]
    assert log == [("publisher", "publish", rid, "ota/manifest/f"),
                   ("publisher", "prune", rid, "7 retained messages cleared")]  # 3 chunks, index, page, 2 manifests
