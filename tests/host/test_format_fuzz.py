"""Mutated manifests, timestamp records and trust files (fixed seed, 1000 cases each): the device
answers every one with a typed OTAError or an acceptance, never another exception."""
import json
import random

import mpunix
from mpota import signing

CASES = 1000
SCRIPT = """
import sys, json
from binascii import unhexlify
from ota import manifest, trust
from ota.freshness import Freshness
from ota.errors import OTAError
keys = trust.load(sys.argv[1])
fresh = Freshness(keys, "plant", "canary", "dev-1", clock=lambda: 1800000000)
counts = {"ok": 0, "typed": 0, "untyped": []}
for line in open(sys.argv[2]):
    kind, blob, other = json.loads(line)
    blob = unhexlify(blob)
    try:
        if kind == "m":
            manifest.check(blob, keys, "esp32-generic", 0, 1 << 21, 1800000000)
        elif kind == "t":
            fresh.check(blob, unhexlify(other))
        else:
            open("fuzz.bin", "wb").write(blob)
            trust.read("fuzz.bin")
        counts["ok"] += 1
    except OTAError:
        counts["typed"] += 1
    except Exception as e:
        counts["untyped"].append([kind, repr(e)])
print(json.dumps(counts))
"""


def mutate(rng, data):
    b = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(4)
        if op == 0 and b:
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            b[rng.randrange(len(b))] = rng.choice((0, 0xFF, rng.randrange(256)))
        elif op == 2:
            del b[rng.randrange(len(b) + 1):]
        else:
            at = rng.randrange(len(b) + 1)
            b[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
    return bytes(b)


def test_mutated_inputs_get_typed_errors_only(tmp_path):
    rng = random.Random(12)
    release, stamp = signing.generate_key(), signing.generate_key()
    trust = signing.trust_file_bytes([release.public_key(), stamp.public_key()], teeth=3,
                                     roles=[signing.ROLE_RELEASE | signing.ROLE_TRUST, signing.ROLE_TIMESTAMP])
    (tmp_path / "trust.bin").write_bytes(trust)
    blob = signing.sign(signing.build_manifest(b"x" * 5000, board="esp32-generic", version="1", counter=1,
                                               chunk_size=1024, key_id=release.public_key()), release)
    record = signing.build_timestamp(level="group", fleet="plant", name="canary", release=signing.manifest_id(blob),
                                     counter=1, issued=1_799_999_000, expires=1_800_003_600, private_key=stamp)
    rows = []
    for _ in range(CASES):
        rows.append(["m", mutate(rng, blob).hex(), ""])
        rows.append(["t", mutate(rng, record).hex(), blob.hex()])
        rows.append(["k", mutate(rng, trust).hex(), ""])
    (tmp_path / "cases").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = json.loads(mpunix.run(SCRIPT, args=[str(tmp_path / "trust.bin"), str(tmp_path / "cases")], cwd=tmp_path,
                                heapsize="1M", timeout=600).stdout)
    assert out["untyped"] == []
    assert out["typed"] + out["ok"] == 3 * CASES and out["typed"] > 2 * CASES
