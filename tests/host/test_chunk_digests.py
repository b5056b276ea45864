"""Per-chunk digests (docs/FORMAT.md section 3) on the simulated board: every chunk and table
message is checked before a byte of it is written; a bad one costs that one message and erases
nothing; the index, pages and chunks arrive in a fixed order; a full release still installs."""
import hashlib
import json
import os

from e2e_env import Fleet
from pipeline_env import FW_HEALTHY
from plugin_sim import partition
from releases import BOARD, Signer
from mpota import signing

SCRIPT = """
import sys, json
from binascii import unhexlify
from ota import trust
from ota.updater import Updater
from ota.errors import OTAError
u = Updater(trust.load(sys.argv[1]), "%s")
m = u.offer(open(sys.argv[2], "rb").read())
for line in open(sys.argv[3]):
    op = json.loads(line)
    if op[0] == "missing":
        print("RESULT", json.dumps(["missing", u.missing(op[1])]))
        continue
    try:
        print("RESULT", json.dumps([u.write_chunk(op[0], unhexlify(op[1]))]))
    except OTAError as e:
        print("RESULT", json.dumps([e.reason]))
u.finish()
print("RESULT", json.dumps(["verified", u.verified]))
""" % BOARD


def results_and_erases(stdout):
    """Each RESULT line with the count of the target slot's sector erases so far: the board
    reports every flash operation (OTASIM_TRACE) on its supervisor channel, here the snippet's
    own stdout, in order with what it prints."""
    out, erases = [], 0
    for line in stdout.splitlines():
        if line == "op e ota_1":
            erases += 1
        elif line.startswith("RESULT "):
            got = json.loads(line[7:])
            out.append(got if got[0] in ("missing", "verified") else got + [erases])
    return out


def flip(data, at=0):
    b = bytearray(data)
    b[at] ^= 1
    return bytes(b)


def test_bad_chunks_and_tables_cost_one_message_and_erase_nothing(sim_snippet, tmp_path):
    signer = Signer(tmp_path / "keys")
    image = os.urandom(8 * 4096 - 100)  # 8 chunks of 4 KiB: 8 sectors
    other = bytes(reversed(image))
    blob, _ = signer.release_of(image, chunk_size=4096)
    other_blob, _ = signer.release_of(other, chunk_size=4096)
    msgs = signing.chunk_messages(signing.parse_blob(blob)[2], image)
    foreign = signing.chunk_messages(signing.parse_blob(other_blob)[2], other)
    n = 8
    index, page = n, n + 1
    ops = [
        ("missing", 4),
        (0, msgs[0]),  # not yet: its page is not in
        (page, msgs[page]),  # not yet: the index is not in
        (index, msgs[index][:-1]),  # truncated index
        (index, msgs[index] + b"\0"),
        (index, foreign[index]),  # another release's index (mix and match)
        (index, msgs[index]),
        ("missing", 4),
        (page, flip(msgs[page], 40)),  # one digest changed
        (page, msgs[page][:-32]),  # truncated table
        (page, foreign[page]),
        (page, msgs[page]),
        ("missing", 4),
        (0, flip(msgs[0])),  # one bit flipped
        (0, foreign[0]),  # another release's chunk at the same index
        (0, msgs[1]),  # another chunk of this release
        (7, msgs[7][:-1]),
        ("missing", 4),  # a refused index waits before it is asked for again: no hot loop on a bad message
        (0, msgs[0]),  # it is still taken when it arrives

        (0, msgs[0]),  # a duplicate
        ("missing", 4),
    ] + [(i, msgs[i]) for i in range(1, n)]
    (tmp_path / "blob").write_bytes(blob)
    (tmp_path / "ops").write_text("".join(json.dumps([k, v if isinstance(v, int) else v.hex()]) + "\n" for k, v in ops))
    proc = sim_snippet(SCRIPT, args=[str(signer.trust), str(tmp_path / "blob"), str(tmp_path / "ops")], heapsize="256K",
                       env={"OTASIM_TRACE": "1", "OTASIM_CTL_FD": "1"})  # the harness reads 8 KB hex lines
    got = results_and_erases(proc.stdout)
    assert got[:21] == [
        ["missing", [index]],
        ["not_yet", 0], ["not_yet", 0],
        ["bad_chunk", 0], ["bad_chunk", 0], ["bad_chunk_digest", 0], [True, 0],
        ["missing", [page]],
        ["bad_chunk_digest", 0], ["bad_chunk", 0], ["bad_chunk_digest", 0], [True, 0],
        ["missing", [0, 1, 2, 3]],
        ["bad_chunk_digest", 0], ["bad_chunk_digest", 0], ["bad_chunk_digest", 0], ["bad_chunk", 0],
        ["missing", [1, 2, 3, 4]],
        [True, 1],  # the first good chunk erases its own sector, and only that
        [False, 1],
        ["missing", [1, 2, 3, 4]],
    ]
    assert [r[0] for r in got[21:-1]] == [True] * (n - 1) and got[-2][1] == n
    assert got[-1] == ["verified", True]
    with open(sim_snippet.flash, "rb") as f:
        flash = f.read()
    offset = partition("ota_1")[3]
    assert flash[offset:offset + len(image)] == image


def test_table_geometry_on_the_wire():
    """The host publishes n chunks, one index and P pages; the index hashes to the signed root."""
    key = signing.generate_key()
    image = bytes(range(256)) * 40  # 10240 bytes in 1000-byte chunks: 11 chunks, 31 per page
    blob = signing.sign(signing.build_manifest(image, board=BOARD, version="1", counter=1, chunk_size=1000,
                                               key_id=key.public_key()), key)
    fields = signing.parse_blob(blob)[2]
    msgs = signing.chunk_messages(fields, image)
    assert len(msgs) == signing.message_count(fields) == 11 + 1 + 1
    assert len(msgs[11]) == 32 and len(msgs[12]) == 11 * 32
    assert hashlib.sha256(msgs[11]).digest() == fields["table_root"]
    assert msgs[12][:32] == hashlib.sha256(image[:1000]).digest()
    try:
        signing.chunk_messages(fields, image[:-1] + b"\0")
    except signing.FormatError:
        pass
    else:
        raise AssertionError("a payload that is not the signed one must be refused")


def test_a_corrupted_retained_chunk_costs_that_chunk_and_no_hot_loop(tmp_path, mosquitto, sim_device):
    """A broker serves one chunk corrupted: the device refuses it on arrival, fetches the rest,
    asks for the bad one again only after a growing pause, and completes once it is repaired."""
    fleet = Fleet(tmp_path, mosquitto(), sim_device)
    board = fleet.board("dev-1")
    blob, image = fleet.signer.release("2.0.0", {"fw": FW_HEALTHY}, counter=2, size=64 * 1024)
    rid = signing.manifest_id(blob)
    topic = "ota/fw/%s/3" % rid
    assert fleet.publish(blob, image).returncode == 0
    with fleet.connection() as conn:
        conn.wait([conn.publish(topic, flip(image[3 * 4096:4 * 4096], 100))])
    board.start()
    fleet.wait_state(lambda s: (s.get("dev-1") or {}).get("progress", 0) >= 90)
    sends = [line for line in fleet.broker.log_text().splitlines() if "Sending PUBLISH to dev-1" in line and "'%s'" % topic in line]
    with fleet.connection() as conn:
        conn.wait([conn.publish(topic, image[3 * 4096:4 * 4096])])
    fleet.wait_state(lambda s: (s.get("dev-1") or {}).get("version") == "2.0.0" and s["dev-1"]["state"] == "idle",
                     timeout=180)
    assert 1 <= len(sends) <= 8, len(sends)  # a hot loop would fetch it thousands of times
    assert board.read_partition("ota_1")[:len(image)] == image
