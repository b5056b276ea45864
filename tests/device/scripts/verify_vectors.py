# Verify (trust file, key id, digest, signature) cases with ota.p256: "T"/"F" per case.
import gc
import json
from binascii import unhexlify
from ota import p256, trust

ticks = [0]


def tick():
    ticks[0] += 1


loaded, keys, verdicts = None, {}, ""
with open(ARGS["cases"]) as f:
    for line in f:
        path, kid, digest, sig = line.split()
        if path != loaded:
            keys = None
            gc.collect()
            keys = {k.id: k for k in trust.load(path)}
            loaded = path
        verdicts += "T" if p256.verify(unhexlify(digest), unhexlify(sig), keys[kid], tick) else "F"
print("RESULT", json.dumps({"verdicts": verdicts, "ticks": ticks[0]}))
