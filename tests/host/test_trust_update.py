"""The trust-update target on the simulated board (docs/FORMAT.md section 7): a new trust file is
checked chunk by chunk, then whole; one without a trust key or with a serial other than its
manifest's counter is refused and the trust file in use stays; a good one replaces it in place
and its keys are used at once."""
import json

from releases import BOARD
from mpota import signing

SCRIPT = """
import sys, json
from binascii import unhexlify
from ota import trust
from ota.updater import Updater
from ota.errors import OTAError
keys = trust.load()
u = Updater(keys, "%s")
out = []
for line in open(sys.argv[1]):
    blob, payload = [unhexlify(x) for x in json.loads(line)]
    try:
        m = u.offer(blob)
        if m is None:
            out.append("nothing")
            continue
        msgs = json.loads(open(sys.argv[2]).read())[m.id]
        while not u.complete():
            for k in u.missing(8):
                u.write_chunk(k, unhexlify(msgs[k]))
        u.finish()
        u.install()
        out.append(["installed", trust.read().serial, [k.id for k in keys]])
    except OTAError as e:
        out.append([e.reason, trust.read().serial, [k.id for k in keys]])
print(json.dumps(out))
""" % BOARD


def test_trust_updates_are_checked_whole_and_replace_the_file_in_place(sim_snippet, tmp_path):
    a, b = signing.generate_key(), signing.generate_key()
    current = signing.trust_file_bytes([a.public_key()])
    (tmp_path / ".ota").mkdir()
    (tmp_path / ".ota" / "trust.bin").write_bytes(current)
    both = signing.trust_update(current, add=[(b.public_key(), signing.ROLE_RELEASE)])
    no_trust_key = signing.trust_file_bytes([b.public_key()], serial=1, roles=[signing.ROLE_RELEASE])
    wrong_serial = signing.trust_file_bytes([a.public_key(), b.public_key()], serial=5)

    def update(payload, counter, key=a):
        tbs = signing.build_manifest(payload, board=BOARD, version="trust-%d" % counter, counter=counter,
                                     chunk_size=1024, key_id=key.public_key(), target="trust")
        return signing.sign(tbs, key), payload

    cases = [update(no_trust_key, 1), update(wrong_serial, 1), update(both, 1), update(both, 1),
             update(current, 0)]
    msgs = {}
    for blob, payload in cases:
        fields = signing.parse_blob(blob)[2]
        msgs[fields["id"]] = [m.hex() for m in signing.chunk_messages(fields, payload)]
    (tmp_path / "cases").write_text("".join(json.dumps([blob.hex(), payload.hex()]) + "\n" for blob, payload in cases))
    (tmp_path / "msgs").write_text(json.dumps(msgs))
    out = json.loads(sim_snippet(SCRIPT, args=[str(tmp_path / "cases"), str(tmp_path / "msgs")], heapsize="4M").stdout)
    ida, idb = (signing.public_key_id(k.public_key()).hex() for k in (a, b))
    assert out == [
        ["bad_trust", 0, [ida]],  # it would leave no key able to sign a trust update
        ["bad_trust", 0, [ida]],  # the file's serial is not the signed counter
        ["installed", 1, [ida, idb]],  # used at once, by the same key list
        "nothing",  # the trust file in use already
        ["downgrade", 1, [ida, idb]],  # the old file cannot come back
    ]
    assert (tmp_path / ".ota" / "trust.bin").read_bytes() == both
