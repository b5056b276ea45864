"""Signed manifests checked on the board with ota.manifest.check: one accepted, the others
refused with the reason the device reports. The room a release may take is the next firmware
slot on an ESP32, a bundle's on rp2 (here 512 KiB, as the bundle sink would compute it)."""
import os

from mpota import signing

BUNDLE_ROOM = 512 * 1024


def test_manifest_accepted_and_refused(deployed, tmp_path):
    board = deployed
    name = board.name
    key, other = signing.generate_key(), signing.generate_key()
    signing.write_trust_file([key.public_key()], tmp_path / "trust.bin")
    payload = os.urandom(2000)

    def blob(signer=key, payload=payload, **kw):
        fields = dict(board=name, version="1.2.3", counter=5, chunk_size=1024, key_id=signer.public_key())
        fields.update(kw)
        return signing.sign(signing.build_manifest(payload, **fields), signer)

    good = blob()
    tampered = bytearray(good)
    tampered[-5] ^= 1
    cases = [
        (good, name, 5),
        (bytes(tampered), name, 5),
        (blob(other), name, 5),
        (good, "other-board", 5),
        (good, name, 6),
        (blob(payload=b"x" * (2 * 1024 * 1024), chunk_size=4096), name, 5),
        (good[:40], name, 5),
    ]
    (tmp_path / "cases.txt").write_text("".join("%s %s %d\n" % (b.hex(), name, m) for b, name, m in cases))
    board.put(tmp_path / "trust.bin", "mt_trust.bin")
    board.put(tmp_path / "cases.txt", "mt_cases.txt")
    room = {"room": BUNDLE_ROOM} if board.kind == "rp2" else {}
    result = board.run("check_manifest", trust="mt_trust.bin", cases="mt_cases.txt", **room)
    assert result["slot"] == (BUNDLE_ROOM if room else 1536 * 1024)
    assert result["results"] == [
        {"ok": ["1.2.3", 5, 2000, signing.public_key_id(key.public_key()).hex()]},
        {"refused": "bad_signature"},
        {"refused": "unknown_key"},
        {"refused": "wrong_board"},
        {"refused": "downgrade"},
        {"refused": "too_large"},
        {"refused": "bad_format"},
    ]
    board.mpremote("exec", "import os\nos.remove('mt_trust.bin')\nos.remove('mt_cases.txt')")
