"""Deflate and delta releases through the whole pipeline on the simulated board: each chunk
checked against its digest, decoded into its piece and written to the inactive slot; the trial
boot and its confirmation; the device's choice between a release and its delta variant; typed
refusals of authentic but malicious chunk streams (docs/FORMAT.md section 4). Boards get the heap
of the raw pipeline tests: decoding needs no more (bench/bench_delta.py measures it)."""
import struct
import zlib

import pytest

from pipeline_env import FW_HEALTHY, PipelineBoard, new_signer
from mpota import encodings, signing
from mpota.fwimage import build_image

SIZE = 96 * 1024
MODULES = {"fw": FW_HEALTHY}


@pytest.fixture
def signer(tmp_path):
    return new_signer(tmp_path)


def base_image(signer):
    """The image every PipelineBoard runs (1.0.0 in ota_0)."""
    return signer.release("1.0.0", MODULES)[1]


def new_image():
    return build_image("2.0.0", dict(MODULES, extra="VALUE = %r\n" % ("x" * 300)), size=SIZE)


def events_of(board, kind):
    return [fields for k, fields in board.events() if k == kind]


def installed(board, image):
    boots = board.device.boot_log()
    assert [b["version"] for b in boots][:2] == ["1.0.0", "2.0.0"], board.device.console
    assert boots[1]["state"] == "PENDING_VERIFY" and boots[-1]["state"] == "VALID"
    assert board.device.read_partition("ota_1")[:len(image)] == image
    assert events_of(board, "confirmed")[-1]["version"] == "2.0.0"


def test_deflate_release_installs_with_trial_boot(sim_device, signer):
    board = PipelineBoard(sim_device, signer, app={"seed": 3, "duplicates": 10})
    image = new_image()
    blob, _ = signer.release_of(image, version="2.0.0", counter=2, encoding="deflate")
    board.stage(blob, image)
    board.device.run(timeout=120)
    installed(board, image)
    offered = events_of(board, "offered")[0]
    assert offered["encoding"] == "deflate" and offered["wire"] == signing.parse_blob(blob)[2]["wire_size"]
    assert events_of(board, "confirmed")[-1]["encoding"] == "deflate"


def test_device_running_the_base_takes_the_delta(sim_device, signer):
    board = PipelineBoard(sim_device, signer, app={"seed": 4, "duplicates": 10})
    image, base = new_image(), base_image(signer)
    full, _ = signer.release_of(image, version="2.0.0", counter=2)
    delta, _ = signer.release_of(image, version="2.0.0", counter=2, encoding="delta", base=base)
    board.stage(full, image, variants=[delta], base=base)
    board.device.run(timeout=120)
    installed(board, image)
    offered = events_of(board, "offered")[0]
    assert offered["encoding"] == "delta" and offered["release"] == signing.manifest_id(full)
    assert offered["wire"] == signing.parse_blob(delta)[2]["wire_size"]
    confirmed = events_of(board, "confirmed")[-1]
    assert confirmed["encoding"] == "delta" and confirmed["release"] == signing.manifest_id(full)


def test_delta_against_another_base_is_refused_and_the_full_release_taken(sim_device, signer):
    image = new_image()
    other = build_image("1.1.0", dict(MODULES, other="Y = 1\n"))
    full, _ = signer.release_of(image, version="2.0.0", counter=2)
    delta, _ = signer.release_of(image, version="2.0.0", counter=2, encoding="delta", base=other)

    alone = PipelineBoard(sim_device, signer)
    before = alone.device.read_partition("ota_1")
    alone.stage(delta, image, base=other)  # only the delta is published: refused, nothing erased
    alone.device.run(timeout=60)
    assert "REFUSED wrong_base" in alone.device.console
    assert alone.device.read_partition("ota_1") == before
    assert {b["version"] for b in alone.device.boot_log()} == {"1.0.0"}

    both = PipelineBoard(sim_device, signer)
    both.stage(full, image, variants=[delta], base=other)
    both.device.run(timeout=120)
    installed(both, image)
    offered = events_of(both, "offered")[0]
    assert offered["encoding"] == "raw" and offered["delta"] == "wrong_base"


def _stream(data):
    c = zlib.compressobj(9, zlib.DEFLATED, -encodings.WBITS)
    return c.compress(data) + c.flush()


@pytest.mark.parametrize("encoding", ["deflate", "delta"])
def test_authentic_but_malicious_chunk_streams_are_refused_as_bad_patch(sim_device, signer, encoding):
    """Chunks a release key signed that still must not reach flash: a zip bomb (a few bytes
    that inflate to 2 MiB), a corrupt stream, and for delta a record reading past the base."""
    board = PipelineBoard(sim_device, signer, app={"seed": 5, "duplicates": 0})
    image, base = new_image(), base_image(signer)
    good = signing.payload_chunks(image, 4096, encoding, encodings.WBITS, base)
    bad = list(good)
    bad[0] = _stream(bytes(2 << 20))  # 2 MiB, more than the slot, in one chunk message
    bad[1] = b"\xff" * 40
    if encoding == "delta":
        bad[2] = _stream(struct.pack("<IHHi", len(base) - 10, 4096, 0, 0) + bytes(4096))
    blob, _ = signer.release_of(image, version="2.0.0", counter=2, encoding=encoding,
                                base=base if encoding == "delta" else None, chunks=bad)  # signed as they are
    board.stage(blob, image, base=base, chunks=bad)
    before = board.device.read_partition("ota_1")
    board.device.run(timeout=120)
    console = board.device.console
    refused = {int(i): reason for i, reason in
               (line.split()[1:3] for line in console.splitlines() if line.startswith("CHUNK_REFUSED"))}
    expected = {0: "bad_patch", 1: "bad_patch"}
    if encoding == "delta":
        expected[2] = "bad_patch"
    assert refused == expected, console
    assert len(bad[0]) <= 4096
    assert {b["version"] for b in board.device.boot_log()} == {"1.0.0"}
    assert "Traceback" not in console
    written = board.device.read_partition("ota_1")
    for k in expected:  # the refused pieces never reached flash: their sectors are as they were
        assert written[k * 4096:(k + 1) * 4096] == before[k * 4096:(k + 1) * 4096] != image[k * 4096:(k + 1) * 4096]


def test_forged_or_foreign_delta_variants_are_ignored_and_the_full_release_taken(sim_device, signer, tmp_path):
    """Variants ride unauthenticated beside the release: one signed by an untrusted key, and a
    genuine delta of another image, both against the running base, must not be taken."""
    board = PipelineBoard(sim_device, signer)
    image, base = new_image(), base_image(signer)
    full, _ = signer.release_of(image, version="2.0.0", counter=2)
    other_image = build_image("2.0.0", dict(MODULES, extra="VALUE = 2\n"), size=SIZE)
    foreign, _ = signer.release_of(other_image, version="2.0.0", counter=2, encoding="delta", base=base)
    forger = new_signer(tmp_path / "forger")
    forged, _ = forger.release_of(image, version="2.0.0", counter=2, encoding="delta", base=base)
    board.stage(full, image, variants=[foreign, forged], base=base)
    board.device.run(timeout=120)
    installed(board, image)
    offered = events_of(board, "offered")[0]
    assert offered["encoding"] == "raw" and offered["delta"] == "unknown_key"
