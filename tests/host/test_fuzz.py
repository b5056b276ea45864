"""Fuzzing the device's parsers under the MicroPython unix port (tests/host/fuzz_harness.py and
fuzz_targets.py): manifests (damaged anywhere, or damaged and re-signed so they pass the
signature), the MQTT decoder, the transport and updater behind it, the state files, the trust
file and ota_config.json. The only acceptable outcomes are success or a typed OTAError.

`make test` runs 1000 cases with a fixed seed; `make soak` (OTA_SOAK=1) runs 10^5 with a seed
from OTA_FUZZ_SEED (default: the time) and prints it, so a finding can be replayed."""
import json
import os
import random
import time

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

import mpunix
from mpunix import LIB, ROOT, SIM_MODULES
from plugin_sim import PARTITIONS, blank_flash
from releases import BOARD, SLOT_SIZE, Signer, release_id
from mpota import signing

HERE = ROOT / "tests" / "host"
NOW = 1767225600  # 2026-01-01: the fuzzed device's clock
# cases per target in `make test` (1000 in all) and in `make soak` (10^5 in all)
SHARES = {"manifest_raw": 200, "manifest_signed": 150, "mqtt": 200, "transport": 100, "state": 200,
          "trust_file": 50, "config_file": 100}


def signed_variants(signer, tbs, count, seed):
    """`count` manifests whose to-be-signed bytes were damaged (bytes, lengths, fields) and then
    signed: the device's checks behind the signature get to see them."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        b = bytearray(tbs)
        for _ in range(rng.randint(1, 3)):
            op = rng.randrange(4)
            if op == 0:
                b[rng.randrange(len(b))] = rng.randrange(256)
            elif op == 1:  # a 32- or 64-bit field set to a boundary value
                at = rng.choice((28, 32, 36, 40, 44))
                b[at:at + 4] = rng.choice((0, 1, 255, 256, 4095, 4096, 65536, 65537, 2 ** 31, 2 ** 32 - 1)).to_bytes(4, "big")
            elif op == 2:  # name lengths, flags, target, encoding
                b[rng.choice((4, 5, 16, 17, 18, 19, 20, 21, 22, 23))] = rng.choice((0, 1, 2, 32, 33, 255))
            else:
                del b[rng.randrange(min(76, len(b) - 1), len(b)):]
        if len(b) >= 8 and rng.random() < 0.7:  # keep the length field consistent, mostly
            b[6:8] = len(b).to_bytes(2, "big")
        sig = signer.key.sign(bytes(b), ec.ECDSA(hashes.SHA256()))  # DER, as the format carries it
        blob = bytes(b) + bytes([len(sig)]) + sig  # not signing.attach: that refuses damaged bytes
        out.append(len(blob).to_bytes(2, "big") + blob)
    return b"".join(out)


SOAK_SEED = int(os.environ.get("OTA_FUZZ_SEED") or time.time())  # printed by the soak, to replay a finding


def soak_scale():
    """100 under `make soak` (10^5 cases in all); 1 in `make test` (10^3, on the soak's own seed)."""
    return int(os.environ.get("OTA_FUZZ_SCALE", "100" if os.environ.get("OTA_SOAK") else "1"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz-corpus")
    signer = Signer(folder / "keys")
    image_blob, image = signer.release("2.0.0", {"fw": "x = 1\n"}, counter=3, size=16 * 1024, chunk_size=4096)
    others = [signer.release("2.1.0", {"fw": "y = 2\n"}, counter=4, size=9008, chunk_size=1000)[0],
              signer.release("2.2.0", {"fw": "z = 3\n"}, counter=5, size=4096, chunk_size=256, expiry=NOW + 3600)[0]]
    names = []
    for i, blob in enumerate([image_blob] + others):
        (folder / ("m%d.bin" % i)).write_bytes(blob)
        names.append("m%d.bin" % i)
    (folder / "trust.bin").write_bytes(signer.trust.read_bytes())
    fields = signing.parse_blob(image_blob)[2]
    messages = signing.chunk_messages(fields, image)  # every chunk topic's payload, as published
    (folder / "chunks.bin").write_bytes(b"".join(len(m).to_bytes(4, "big") + m for m in messages))
    tbs = signing.parse_blob(image_blob)[0]
    variants = SHARES["manifest_signed"] * soak_scale() if os.environ.get("OTA_SOAK") else 600
    host_seed = SOAK_SEED if os.environ.get("OTA_SOAK") else 5
    (folder / "signed.bin").write_bytes(signed_variants(signer, tbs, variants, host_seed))  # each case its own
    (folder / "config.json").write_text(json.dumps({
        "device_id": "dev-1", "board": BOARD, "fleet": "plant", "group": "north", "root": "ota",
        "broker": {"host": "mqtt.example.com", "port": 8883, "tls": True, "ca": "certs/ca.der",
                   "cert": "certs/device.der", "key": "certs/device.key.der", "server_hostname": None, "user": None,
                   "password": None, "keepalive": 30},
        "install": "window 2 4", "wdt_ms": 8000, "confirm_within_ms": 300000, "wifi": None}))
    (folder / "info.json").write_text(json.dumps({
        "board": BOARD, "slot_size": SLOT_SIZE, "now": NOW, "manifests": names, "release": release_id(image_blob),
        "chunk_count": fields["chunk_count"]}))
    return folder


def fuzz(corpus, work, target, seed, cases):
    """Run one target in a fresh board folder; returns the harness's summary."""
    work.mkdir(parents=True, exist_ok=True)
    flash = work / "flash.bin"
    if not flash.exists():
        blank_flash(flash)
    env = {"OTASIM_FLASH": str(flash), "OTASIM_PARTITIONS": str(PARTITIONS), "OTASIM_RUNNING": "ota_0",
           "OTASIM_RESET_CAUSE": "1"}
    code = "import fuzz_harness; fuzz_harness.main(%r, %d, %d, %r)" % (target, seed, cases, str(corpus))
    proc = mpunix.run(code, path=(HERE, SIM_MODULES, LIB), heapsize="4M", cwd=work, env=env, timeout=7200)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def assert_clean(summary):
    assert summary["ok"] + sum(summary["typed"].values()) + summary["untyped"] == summary["cases"]
    assert summary["untyped"] == 0, "untyped exceptions (case, error, input):\n%s" % "\n".join(
        map(str, summary["examples"]))
    assert summary["violations"] == 0, summary


@pytest.mark.parametrize("target", sorted(SHARES))
def test_fuzz_fixed_seed(corpus, tmp_path, target):
    summary = fuzz(corpus, tmp_path / target, target, 1, SHARES[target])
    print(json.dumps(summary))
    assert_clean(summary)
    reached = summary["ok"] + sum(summary["typed"].values())
    assert reached == SHARES[target]
    if target.startswith("manifest"):
        assert len(summary["typed"]) >= 3, summary  # the damage reaches several different checks


def test_fuzz_soak(corpus, tmp_path):
    seed = SOAK_SEED
    scale = soak_scale()
    total = {"cases": 0, "untyped": 0, "violations": 0}
    for target, share in sorted(SHARES.items()):
        summary = fuzz(corpus, tmp_path / target, target, seed, share * scale)
        print("fuzz %-16s seed %d: %d cases, %d ok, typed %s, untyped %d, violations %d" % (
            target, seed, summary["cases"], summary["ok"], summary["typed"], summary["untyped"],
            summary["violations"]))
        for key in total:
            total[key] += summary[key]
        assert_clean(summary)
    print("fuzz total: %d cases, %d untyped, %d violations (seed %d)" % (
        total["cases"], total["untyped"], total["violations"], seed))
    assert total["cases"] == 1000 * scale


def test_the_mutator_is_deterministic_and_damages(mp):
    out = mp("import fuzz_harness as h; r = h.Rng(3); a = [h.mutate(r, b'0123456789' * 4) for _ in range(200)]; "
             "r = h.Rng(3); b = [h.mutate(r, b'0123456789' * 4) for _ in range(200)]; "
             "print(a == b, sum(x != b'0123456789' * 4 for x in a), len(set(a)))",
             path=(HERE, LIB), heapsize="1M").stdout.split()
    assert out[0] == "True" and int(out[1]) >= 190 and int(out[2]) >= 150




@pytest.mark.parametrize("chunk_size", [0, 1, 31, 32, 255])
def test_a_signed_manifest_with_a_tiny_chunk_size_is_a_typed_error(tmp_path, mp, chunk_size):
    """Found by the soak campaign: a chunk size under 32 divided by zero behind the signature."""
    signer = Signer(tmp_path / "keys")
    blob = signer.release("2.0.0", {"fw": "x = 1\n"}, counter=3, size=16 * 1024)[0]
    fields = list(signing.HEADER.unpack_from(blob))
    assert fields[11] == 4096  # the chunk size field
    fields[11] = chunk_size
    tbs = signing.HEADER.pack(*fields) + blob[signing.HEADER.size:fields[3]]
    sig = signer.key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    (tmp_path / "m.bin").write_bytes(tbs + bytes([len(sig)]) + sig)
    out = mp("""
from ota import manifest, trust
from ota.errors import OTAError
try:
    manifest.check(open("m.bin", "rb").read(), trust.load("keys/trust.bin"), %r, 0, %d, %d)
    print("accepted")
except OTAError as exc:
    print(exc.reason)
""" % (BOARD, SLOT_SIZE, NOW), path=(LIB,), heapsize="1M", cwd=tmp_path).stdout.strip()
    assert out == "bad_geometry"
