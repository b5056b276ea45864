"""Deflate and delta chunks (docs/ENCODINGS.md): built by the host (tools/encodings.py), decoded
by the device (lib/ota/encoding.py) under the real MicroPython unix port, its base read from the
simulated running slot (esp32.Partition) as on the board, with and without the
viper byte loop; every malformed chunk refused with `bad_patch` before it yields a byte."""
import json
import random
import shutil
import struct
import zlib

import pytest

import mpunix
from mpunix import SIM_MODULES
from mpota import encodings, signing
from plugin_sim import PARTITIONS, blank_flash

PIECE = encodings.PIECE

DECODE = """
import sys, json
from ota.encoding import LOOP, Decoder
from ota.errors import OTAError
from esp32 import Partition

kind = sys.argv[2]
d = Decoder(4096, 12, Partition(Partition.RUNNING), int(sys.argv[1]))  # the base: the running slot, as on the board
out = open(sys.argv[4], "wb")
results = []
for line in open(sys.argv[3]):
    c = json.loads(line)
    chunk = bytes.fromhex(c["chunk"])
    try:
        plain = d.delta(chunk, c["length"]) if kind == "delta" else d.deflate(chunk, c["length"])
        out.write(plain)
        results.append("ok")
    except OTAError as e:
        results.append(e.reason)
print(json.dumps({"results": results, "loop": LOOP}))
"""


def _images(seed=7, size=70_000):
    r = random.Random(seed)
    base = bytes(r.getrandbits(8) if i % 7 else 0 for i in range(size))
    new = bytearray(base[:30_000] + bytes(r.getrandbits(8) for _ in range(3_000)) + base[29_000:])
    for _ in range(200):
        new[r.randrange(len(new))] ^= r.getrandbits(8) | 1
    return base, bytes(new[:size + 2_500])


def _decode(tmp_path, base, kind, chunks, lengths, lib=mpunix.LIB):
    flash = blank_flash(tmp_path / "flash.bin", base)  # the base image in the running slot (ota_0)
    with open(tmp_path / "chunks.jsonl", "w") as f:
        for chunk, length in zip(chunks, lengths):
            f.write(json.dumps({"chunk": chunk.hex(), "length": length}) + "\n")
    script = tmp_path / "decode.py"
    script.write_text(DECODE)
    proc = mpunix.run(script=script, args=[str(len(base)), kind, str(tmp_path / "chunks.jsonl"), str(tmp_path / "out.bin")],
                      path=(SIM_MODULES, lib), heapsize="1M",
                      env={"OTASIM_FLASH": str(flash), "OTASIM_PARTITIONS": str(PARTITIONS), "OTASIM_RUNNING": "ota_0"})
    return json.loads(proc.stdout), (tmp_path / "out.bin").read_bytes()


def _lengths(image):
    return [min(PIECE, len(image) - i) for i in range(0, len(image), PIECE)]


@pytest.fixture
def lib_without_viper(tmp_path):
    lib = tmp_path / "lib"
    shutil.copytree(mpunix.LIB, lib)
    (lib / "ota" / "fastadd.py").unlink()
    return lib


@pytest.mark.parametrize("loop", ["viper", "python"])
def test_delta_rebuilds_the_new_image_in_any_order(tmp_path, loop, lib_without_viper):
    base, new = _images()
    chunks = encodings.delta_chunks(base, new)
    assert encodings.apply_delta(base, chunks) == new
    order = list(range(len(chunks)))
    random.Random(3).shuffle(order)
    lib = mpunix.LIB if loop == "viper" else lib_without_viper
    lengths = _lengths(new)
    got, out = _decode(tmp_path, base, "delta", [chunks[i] for i in order], [lengths[i] for i in order], lib)
    assert got == {"results": ["ok"] * len(chunks), "loop": loop}
    pieces = {i: out[sum(lengths[j] for j in order[:k]) :][: lengths[i]] for k, i in enumerate(order)}
    assert b"".join(pieces[i] for i in range(len(chunks))) == new
    assert sum(map(len, chunks)) < len(new) // 4  # a small change makes a small patch


def test_deflate_chunks_inflate_to_their_pieces(tmp_path):
    _, new = _images()
    chunks = encodings.deflate_chunks(new)
    got, out = _decode(tmp_path, b"", "deflate", chunks, _lengths(new))
    assert got["results"] == ["ok"] * len(chunks)
    assert out == new


def _raw(body):
    c = zlib.compressobj(9, zlib.DEFLATED, -encodings.WBITS)
    return c.compress(body) + c.flush()


def _record(n_diff, n_extra, step, payload=b""):
    return struct.pack("<HHi", n_diff, n_extra, step) + payload


def test_malformed_chunks_are_refused(tmp_path):
    base, new = _images()
    good = encodings.delta_chunks(base, new)[1]
    cases = {
        "flipped": bytes([good[0] ^ 0xFF]) + good[1:],
        "truncated": good[: len(good) // 2],
        "empty": b"",
        "bomb": _raw(struct.pack("<I", 0) + _record(0, PIECE, 0, bytes(PIECE)) + bytes(1 << 20)),
        "past_piece": _raw(struct.pack("<I", 0) + _record(PIECE, 1, 0, bytes(PIECE + 1))),
        "before_base": _raw(struct.pack("<I", 0) + _record(0, 8, -16, bytes(8)) + _record(8, 0, 0, bytes(8))),
        "past_base": _raw(struct.pack("<I", len(base) - 4) + _record(8, 0, 0, bytes(8))),
        "empty_record": _raw(struct.pack("<I", 0) + _record(0, 0, 0) * 4),
        "short_record": _raw(struct.pack("<I", 0) + b"\x01\x00"),
        "header_only": _raw(b"\x00\x00"),
        "garbage": bytes(range(256)) * 4,
        "trailing": good + b"\x00",  # a whole stream, then a byte that is not part of it
        # a valid stream that needs more input ahead than the device holds: 220 empty stored
        # blocks (1100 bytes, no output) before the first plain byte
        "starving": b"\x00\x00\x00\xff\xff" * 220 + good,
    }
    assert zlib.decompress(cases["starving"], -encodings.WBITS) == zlib.decompress(good, -encodings.WBITS)
    assert not encodings.fits_ahead(cases["starving"]) and encodings.fits_ahead(good)
    assert len(cases["starving"]) <= PIECE + encodings.SLACK
    got, out = _decode(tmp_path, base, "delta", list(cases.values()), [PIECE] * len(cases))
    assert dict(zip(cases, got["results"])) == {name: "bad_patch" for name in cases}
    assert out == b""


def test_deflate_bomb_and_short_stream_are_refused(tmp_path):
    cases = [_raw(bytes(1 << 20)), _raw(bytes(100)), b"\xff" * 64]
    got, out = _decode(tmp_path, b"", "deflate", cases, [PIECE] * 3)
    assert got["results"] == ["bad_patch"] * 3
    assert out == b""


def test_every_chunk_the_host_makes_fits_the_devices_input_ring():
    """The device holds 1023 bytes of a chunk ahead of its inflater: the host checks each stream,
    and falls back to stored blocks for a piece whose compressed stream would need more."""
    base, new = _images()
    r = random.Random(5)
    mixed = bytes(r.getrandbits(8) for _ in range(6000)) + bytes(6000) + new[:20_000]
    for chunks in (encodings.delta_chunks(base, new), encodings.deflate_chunks(mixed), encodings.deflate_chunks(new)):
        assert all(encodings.fits_ahead(c) for c in chunks)
    assert not encodings.fits_ahead(b"\x00\x00\x00\xff\xff" * 220 + encodings.deflate_chunks(new)[0])


def test_no_chunk_is_larger_than_its_piece_plus_slack():
    r = random.Random(11)
    base = bytes(r.getrandbits(8) for _ in range(20_000))
    new = bytes(r.getrandbits(8) for _ in range(30_000))  # nothing in common: all extra bytes
    for chunks in (encodings.delta_chunks(base, new), encodings.deflate_chunks(new)):
        assert max(map(len, chunks)) <= PIECE + encodings.SLACK
    assert encodings.apply_delta(base, encodings.delta_chunks(base, new)) == new


@pytest.mark.parametrize("kind", ["deflate", "delta"])
def test_truncated_chunk_is_refused_even_when_the_previous_chunk_would_complete_it(tmp_path, kind):
    """The decoder reuses one input ring: a chunk cut short must not be finished by the bytes an
    earlier, longer chunk left in it."""
    base, new = _images()
    chunk = (encodings.delta_chunks(base, new) if kind == "delta" else encodings.deflate_chunks(new))[1]
    flipped = bytes([chunk[0] ^ 0xFF]) + chunk[1:]  # refused at once, its input left unread in the ring
    got, out = _decode(tmp_path, base, kind, [chunk, chunk[: len(chunk) // 2], chunk, flipped, chunk], [PIECE] * 5)
    assert got["results"] == ["ok", "bad_patch", "ok", "bad_patch", "ok"]
    assert out == new[PIECE:2 * PIECE] * 3


def test_a_manifest_commits_to_supplied_chunks_of_the_right_count_and_lengths():
    """build_manifest(chunks=...) signs chunks encoded elsewhere as they are (the device checks
    what they decode to); a wrong count or a chunk past chunk size + 64 is refused on the host."""
    _, new = _images()
    made = encodings.deflate_chunks(new)
    fields = dict(board="b", version="2", counter=2, chunk_size=PIECE, key_id=bytes(8), encoding="deflate")
    tbs = signing.build_manifest(new, **fields, chunks=made)
    assert tbs == signing.build_manifest(new, **fields)  # the same chunks the host would make
    odd = [_raw(bytes(PIECE))] + made[1:]  # another stream for piece 0: committed to as it is
    parsed = signing.parse_tbs(signing.build_manifest(new, **fields, chunks=odd))
    assert parsed["wire_size"] == sum(map(len, odd)) and parsed["digest"] == signing.parse_tbs(tbs)["digest"]
    for wrong in (made[:-1], made + [made[0]], [bytes(PIECE + 65)] + made[1:], [b""] + made[1:]):
        with pytest.raises(signing.FormatError):
            signing.build_manifest(new, **fields, chunks=wrong)
