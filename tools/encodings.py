"""Deflate and delta chunks for a release payload (docs/ENCODINGS.md); the device side is
`lib/ota/encoding.py`.

Each chunk is an independent raw-deflate stream (window 2**window_bits, 2**10 by default) that
inflates to one piece (chunk size bytes) of the new image, and never needs more input ahead of
its inflater than the device holds (`fits_ahead`). A delta piece is a list of bsdiff records
(diff bytes added to the base, then extra bytes copied) that produce exactly that piece, so
pieces apply in any order."""
import struct
import zlib

import bsdiff4.core

PIECE = 4096  # plain bytes per chunk by default: one flash sector
WBITS = 10  # the manifest's window bits by default: the device inflates with a 2**10-byte window
_MAX_RECORD = 0xFFFF
SLACK = 64  # an encoded chunk is at most piece + SLACK bytes (stored deflate blocks cost 5 each)


AHEAD = 1023  # input bytes the device holds ahead of its inflater (lib/ota/encoding.py)
_STEP = 256  # plain bytes it inflates between top-ups of that input
_MARGIN = 32  # for zlib's own read-ahead, which the check below measures with


def _compress(data, wbits=WBITS):
    for level in (9, 0):  # stored blocks (level 0) need at most a step plus 5 bytes of input ahead
        c = zlib.compressobj(level, zlib.DEFLATED, -wbits, 9)
        chunk = c.compress(data) + c.flush()
        if fits_ahead(chunk, wbits):
            return chunk
    raise ValueError("no deflate stream of this piece fits the device's input ring")


def fits_ahead(chunk, wbits=WBITS):
    """True when the device never needs more than AHEAD bytes of `chunk` ahead of its inflater to
    produce any _STEP plain bytes (docs/FORMAT.md section 4): the input each 16 plain bytes take,
    summed over any span of 80 (a step at any alignment), plus a margin."""
    d = zlib.decompressobj(-wbits)
    tail, used = chunk, [0]
    while not d.eof:
        before = len(tail)
        if not d.decompress(tail, 16) and len(d.unconsumed_tail) == before:
            return False  # a stream that ends early is not ours to judge: the device refuses it
        tail = d.unconsumed_tail
        used.append(len(chunk) - len(tail) - len(d.unused_data))
    span = _STEP // 16 + 1
    limit = AHEAD - _MARGIN
    return not d.unused_data and all(used[min(i + span, len(used) - 1)] - used[i] <= limit or len(chunk) - used[i] <= limit
                                     for i in range(len(used)))


def _pieces(image, piece):
    return [image[i : i + piece] for i in range(0, len(image), piece)]


def deflate_chunks(image, piece=PIECE, wbits=WBITS):
    """Encoding 1: each piece of the image deflated on its own."""
    return [_compress(p, wbits) for p in _pieces(image, piece)]


def _offtin(raw):
    value = int.from_bytes(raw[:7] + bytes([raw[7] & 0x7F]), "little")
    return -value if raw[7] & 0x80 else value


def _records(base, image):
    """bsdiff's (diff length, extra length, base step) triples and its diff and extra bytes."""
    control, diff, extra = bsdiff4.core.diff(base, image)
    triples = [tuple(_offtin(control[i + k : i + k + 8]) for k in (0, 8, 16)) for i in range(0, len(control), 24)]
    return triples, diff, extra


def delta_chunks(base, image, piece=PIECE, wbits=WBITS):
    """Encoding 2: each piece of `image` as records against `base`, deflated on its own."""
    triples, diff, extra = _records(base, image)
    chunks = []
    records = []  # [diff length, extra length, base step] of the piece being built
    state = {"old": 0, "start": 0, "new": 0, "diff": 0, "extra": 0}

    def close_piece():
        out = bytearray(struct.pack("<I", state["start"]))
        for n_diff, n_extra, step, d_at, e_at in records:
            out += struct.pack("<HHi", n_diff, n_extra, step) + diff[d_at : d_at + n_diff] + extra[e_at : e_at + n_extra]
        chunk = _compress(bytes(out), wbits)
        if len(chunk) > piece + SLACK:
            # many records over new code: records of the piece's bytes alone are never larger
            at = len(chunks) * piece
            chunk = _compress(_literal(image[at : at + piece]), wbits)
        chunks.append(chunk)
        records.clear()
        state["start"] = state["old"]

    for n_diff, n_extra, step in triples:
        if not n_diff and not n_extra:
            if records:
                records[-1][2] += step
            else:
                state["start"] += step
            state["old"] += step
            continue
        while n_diff or n_extra:
            room = min(piece - state["new"] % piece, _MAX_RECORD)
            take_diff = min(n_diff, room)
            take_extra = min(n_extra, room - take_diff)
            n_diff -= take_diff
            n_extra -= take_extra
            moved = step if not n_diff and not n_extra else 0  # the step follows the whole triple
            records.append([take_diff, take_extra, moved, state["diff"], state["extra"]])
            state["old"] += take_diff + moved
            state["new"] += take_diff + take_extra
            state["diff"] += take_diff
            state["extra"] += take_extra
            if state["new"] % piece == 0 or state["new"] == len(image):
                close_piece()
    if state["new"] != len(image) or len(chunks) != (len(image) + piece - 1) // piece:
        raise ValueError("delta does not cover the image")
    return chunks


def _literal(data):
    """A piece as extra bytes only (records of at most 65535 bytes each)."""
    out = bytearray(struct.pack("<I", 0))
    for at in range(0, len(data), _MAX_RECORD):
        part = data[at : at + _MAX_RECORD]
        out += struct.pack("<HHi", 0, len(part), 0) + part
    return bytes(out)


def apply_delta(base, chunks, piece=PIECE, size=None, wbits=WBITS):
    """The host's own applier, for checking a patch before it is published."""
    out = bytearray()
    for chunk in chunks:
        body = zlib.decompress(chunk, -wbits)
        old = struct.unpack_from("<I", body)[0]
        pos = 4
        while pos < len(body):
            n_diff, n_extra, step = struct.unpack_from("<HHi", body, pos)
            pos += 8
            out.extend((base[old + i] + body[pos + i]) & 0xFF for i in range(n_diff))
            pos += n_diff
            out.extend(body[pos : pos + n_extra])
            pos += n_extra
            old += n_diff + step
    return bytes(out[:size] if size is not None else out)
