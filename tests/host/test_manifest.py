"""The device's manifest check (lib/ota/manifest.py) under the real MicroPython unix port, against
blobs built and signed by the host library (tools/signing.py): every refusal and its reason."""
import hashlib
import json
import os

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

import mpunix
from mpota import signing

BOARD = "esp32-generic"
SLOT = 1536 * 1024
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # P-256 group order

CHECK = """
import sys, json
from binascii import unhexlify, hexlify
from ota import manifest, trust
from ota.errors import OTAError
keys = trust.load(sys.argv[1])
out = []
for line in open(sys.argv[2]):
    c = json.loads(line)
    try:
        m = manifest.check(unhexlify(c["blob"]), keys, c["board"], c["min"], c["slot"], c["now"])
        out.append({"ok": [m.id, m.version, m.counter, m.board, m.target, m.encoding, m.size,
                           hexlify(m.digest).decode(), m.chunk_size, m.chunk_count, m.expiry, m.key_id]})
    except OTAError as e:
        out.append({"refused": e.reason, "type": type(e).__name__})
print(json.dumps(out))
"""


class Env(tuple):
    """(folder, key, other) plus `release_only` and `stamp` keys with narrower roles."""


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("manifest")
    key, other, release_only, stamp = (signing.generate_key() for _ in range(4))
    signing.write_trust_file([key.public_key(), release_only.public_key(), stamp.public_key()], d / "trust.bin",
                             roles=[signing.ROLE_RELEASE | signing.ROLE_TRUST, signing.ROLE_RELEASE,
                                    signing.ROLE_TIMESTAMP])
    e = Env((d, key, other))
    e.release_only, e.stamp = release_only, stamp
    return e


def build(key, payload=b"x" * 5000, **kw):
    fields = dict(board=BOARD, version="1.2.3", counter=7, chunk_size=1024, key_id=key.public_key())
    fields.update(kw)
    return signing.build_manifest(payload, **fields)


def run_checks(env, cases):
    d, _, _ = env
    listing = d / "cases.jsonl"
    rows = []
    for blob, kw in cases:
        row = {"blob": bytes(blob).hex(), "board": BOARD, "min": 7, "slot": SLOT, "now": None}
        row.update(kw)
        rows.append(json.dumps(row))
    listing.write_text("\n".join(rows) + "\n")
    return json.loads(mpunix.run(CHECK, args=[str(d / "trust.bin"), str(listing)]).stdout)


def signing_attach_raw(tbs, key):
    # Sign without the host's format checks, as a compromised or buggy signer could.
    sig = key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    return tbs + bytes([len(sig)]) + sig


def test_accepts_and_reports_every_field(env):
    _, key, _ = env
    payload = os.urandom(3000)
    blob = signing.sign(build(key, payload, version="v2.0-rc1", chunk_size=1000, expiry=4102444800), key)
    host = signing.verify(blob, key.public_key())
    (got,) = run_checks(env, [(blob, {"now": 1700000000})])
    assert got["ok"] == [
        hashlib.sha256(blob[: blob[6] << 8 | blob[7]]).hexdigest()[:16], "v2.0-rc1", 7, BOARD, "firmware", "raw", 3000,
        hashlib.sha256(payload).hexdigest(), 1000, 3, 4102444800, signing.public_key_id(key.public_key()).hex(),
    ]
    assert host["id"] == got["ok"][0] and host["chunk_count"] == 3 and host["expiry"] == 4102444800


def test_release_id_survives_a_malleated_signature(env):
    """s and n - s both verify: the release id must not change with the signature's encoding."""
    _, key, _ = env
    tbs = build(key, os.urandom(1000))
    r, s = utils.decode_dss_signature(signing.parse_blob(signing.sign(tbs, key))[1])
    twin = signing.attach(tbs, utils.encode_dss_signature(r, N - s))
    (a, b) = run_checks(env, [(signing.attach(tbs, utils.encode_dss_signature(r, s)), {}), (twin, {})])
    assert a["ok"][0] == b["ok"][0] == signing.manifest_id(twin)


def test_policy_refusals(env):
    _, key, other = env
    good = signing.sign(build(key), key)
    expiring = signing.sign(build(key, expiry=1000), key)
    cases = [
        (good, {"board": "rp2-pico-w"}),
        (good, {"min": 8}),
        (good, {"min": 7}),  # same counter: a re-install, allowed
        (expiring, {"now": 1000}),
        (expiring, {"now": 999}),
        (expiring, {"now": None}),  # no clock: an expiring release cannot be judged
        (good, {"slot": 4999}),
        (good, {"slot": 5000}),
        (signing.sign(build(other), other), {}),  # a key the device does not trust
        (signing.sign(build(key, key_id=other.public_key()), key), {}),  # names another key
    ]
    got = [r.get("refused", "ok") for r in run_checks(env, cases)]
    assert got == ["wrong_board", "downgrade", "ok", "expired", "ok", "no_clock", "too_large", "ok",
                   "unknown_key", "unknown_key"]


def test_key_roles_limit_what_a_key_may_sign(env):
    """A timestamp key never authorises code; only a trust key signs a trust update."""
    _, key, _ = env
    by_stamp = build(env.stamp, key_id=env.stamp.public_key())
    trust_update = build(env.release_only, target="trust", key_id=env.release_only.public_key())
    cases = [
        (signing.sign(by_stamp, env.stamp), {}),
        (signing.sign(trust_update, env.release_only), {}),
        (signing.sign(build(env.release_only, key_id=env.release_only.public_key()), env.release_only), {}),
        (signing.sign(build(key, target="trust"), key), {}),
        (signing.sign(build(key, target="bundle"), key), {}),
    ]
    got = [r.get("refused", "ok") for r in run_checks(env, cases)]
    assert got == ["unknown_key", "unknown_key", "ok", "ok", "ok"]


def test_signature_over_other_bytes_and_flipped_bits_are_refused(env):
    _, key, other = env
    blob = signing.sign(build(key), key)
    tbs_len = len(build(key))
    cases = []
    other_tbs = build(key, counter=99)
    cases.append((other_tbs + blob[tbs_len:], {}))  # signature taken from another manifest
    wrong = signing.attach(build(key), other.sign(build(key), ec.ECDSA(hashes.SHA256())))
    cases.append((wrong, {}))
    for bit in range(0, 8 * len(blob), 37):
        if 8 <= bit // 8 < 16:
            continue  # key id bits give unknown_key, checked above
        b = bytearray(blob)
        b[bit // 8] ^= 1 << (bit % 8)
        cases.append((bytes(b), {}))
    got = {r.get("refused") for r in run_checks(env, cases)}
    assert got <= {"bad_signature", "bad_format", "unsupported"} and "bad_signature" in got


def test_format_bounds(env):
    _, key, _ = env
    tbs = build(key)
    good = signing.sign(tbs, key)
    hdr = signing.HEADER.size

    def field(offset, value, size=4):
        return signing_attach_raw(tbs[:offset] + value.to_bytes(size, "big") + tbs[offset + size:], key)

    cases = [
        (good[:-1], "bad_format"),  # truncated signature
        (good + b"\x00", "bad_format"),  # trailing byte
        (b"MOTB" + good[4:], "bad_format"),
        (good[:100], "bad_format"),
        (b"", "bad_format"),
        (good + bytes(300), "bad_format"),
        (good[:4] + b"\x01" + good[5:], "unsupported"),  # format version 1: replaced by v2
        (good[:4] + b"\x03" + good[5:], "unsupported"),
        (good[:6] + (len(tbs) + 1).to_bytes(2, "big") + good[8:], "bad_format"),
        (good[:5] + b"\x04" + good[6:], "unsupported"),  # target 4
        # authentic (re-signed) but malformed or unsupported fields
        (field(16, 3, 1), "unsupported"),  # encoding 3
        (field(16, 1, 1), "unsupported"),  # deflate without window bits
        (field(19, 12, 1), "unsupported"),  # window bits on a raw release
        (field(148, 1), "bad_format"),  # reserved
        (signing_attach_raw(tbs[:hdr] + b"esp32 generic" + tbs[hdr + 13:], key), "bad_format"),
        (signing_attach_raw(tbs[:hdr + 13] + b"1.2\x00" + tbs[hdr + 17:], key), "bad_format"),
        (field(17, 12, 1), "bad_format"),  # board length
        (field(28, 255), "bad_geometry"),  # chunk size
        (field(28, 65537), "bad_geometry"),
        (field(32, 4), "bad_geometry"),  # chunk count: 5000 / 1024 is 5
        (field(32, 6), "bad_geometry"),
        (field(24, 0), "bad_geometry"),  # size 0
        (field(36, 5001), "bad_geometry"),  # wire size differs from size for raw
        (field(112, 10), "bad_geometry"),  # a base on a raw release
        (field(116, 1, 32), "bad_geometry"),
        (field(16, 2, 1), "unsupported"),  # delta without window bits
        (signing_attach_raw(tbs[:16] + b"\x02" + tbs[17:19] + b"\x0c" + tbs[20:], key), "bad_geometry"),  # delta, no base
    ]
    got = [r.get("refused", "ok") for r in run_checks(env, [(b, {}) for b, _ in cases])]
    assert got == [reason for _, reason in cases]


def test_digest_table_bound(env):
    """The table's index must fit in one chunk: at most (chunk size / 32)^2 chunks."""
    _, key, _ = env
    fits = build(key, payload=bytes(64 * 256), chunk_size=256)  # 64 chunks, 8 pages of 8
    with pytest.raises(signing.FormatError):
        build(key, payload=bytes(64 * 256 + 1), chunk_size=256)
    big = bytearray(fits)
    big[24:28] = (64 * 256 + 1).to_bytes(4, "big")
    big[32:36] = (65).to_bytes(4, "big")
    big[36:40] = (64 * 256 + 1).to_bytes(4, "big")
    got = [r.get("refused", "ok") for r in run_checks(env, [(signing.sign(fits, key), {}),
                                                            (signing_attach_raw(bytes(big), key), {})])]
    assert got == ["ok", "bad_geometry"]


@pytest.mark.parametrize("field, value", [
    ("board", ""), ("board", "x" * 33), ("board", "a b"), ("version", ""), ("version", "v" * 33),
    ("version", "1 2"), ("counter", -1), ("counter", 2**32), ("chunk_size", 255),
    ("chunk_size", 65537), ("expiry", 0), ("target", "app"), ("encoding", "delta"), ("key_id", b"1234567"),
])
def test_host_builder_refuses_out_of_bounds_fields(env, field, value):
    _, key, _ = env
    with pytest.raises(signing.FormatError):
        build(key, **{field: value})


def test_host_builder_accepts_the_bounds(env):
    _, key, _ = env
    tbs = build(key, payload=b"z", board="b" * 32, version="~" * 32, counter=2**32 - 1,
                chunk_size=65536, expiry=2**40)
    assert len(tbs) == signing.TBS_MAX
    blob = signing.sign(tbs, key)
    (got,) = run_checks(env, [(blob, {"board": "b" * 32, "min": 2**32 - 1, "now": 1700000000})])
    assert got["ok"][2] == 2**32 - 1 and got["ok"][9] == 1
