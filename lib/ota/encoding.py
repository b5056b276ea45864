"""Chunk decoders for compressed (deflate) and delta payloads: one received chunk in, the slot
bytes it stands for out.

Every chunk of an encoded payload is an independent raw-deflate stream that inflates to exactly
one piece of the image (`piece` bytes, the last one shorter), at offset index × piece. So chunks
may arrive in any order, a power cut resumes from the same bitmap as a raw download, and a chunk
can never inflate past its piece: decoding stops at the piece's length and anything more is
refused (docs/ENCODINGS.md). A delta piece reads the base image (the running slot) through the
block-device protocol and never writes it.

    d = Decoder(m.chunk_size, m.window_bits, base=esp32.Partition(esp32.Partition.RUNNING), base_size=m.base_size)
    plain = d.delta(chunk, expected_length)     # a memoryview into a buffer reused per chunk
"""
import deflate
import gc
import struct

import micropython
from micropython import const

from ota.errors import FormatError

_RECORD = const(8)  # u16 diff length, u16 extra length, i32 base step
_STEP = const(256)  # plain bytes inflated at a time; the input is topped up before each step
_AHEAD = const(1023)  # input bytes held ahead of the inflater (docs/FORMAT.md section 4)
_SECTOR = const(4096)
_SLACK = const(64)  # an encoded chunk is at most piece + 64 bytes
_SMALL_HEAP = const(1024 * 1024)  # below this, collect before each chunk

try:
    from ota.fastadd import add_into  # viper: present in .py form and in -march builds

    LOOP = "viper"  # which byte loop this build runs: benchmarks report it
except (ImportError, SyntaxError, ValueError):
    LOOP = "python"

    def add_into(dst, start, src, n):
        """dst[start + i] += src[i] (mod 256) for i < n: bsdiff's diff bytes on the base."""
        for i in range(n):
            dst[start + i] = (dst[start + i] + src[i]) & 0xFF


class Decoder:
    """Decodes chunks into one preallocated piece buffer; the caller writes it to the slot."""

    def __init__(self, piece, window_bits, base=None, base_size=0, out=None):
        self.piece = piece
        self.window_bits = window_bits  # the inflate window is 2**window_bits bytes
        self.base = base  # block device (readblocks with offset) holding the base image
        self.base_size = base_size
        self._out = out if out is not None and len(out) >= piece else bytearray(piece)  # e.g. a buffer idle meanwhile
        # The inflater pulls its input a byte at a time from a native stream (through a Python
        # class that costs a method call per byte). A ring of 1023 bytes, topped up from the chunk
        # before every step of 256 plain bytes, stands in for a copy of the whole chunk.
        self._ring = micropython.RingIO(_AHEAD)
        self._chunk = memoryview(b"")  # the chunk being decoded
        self._fed = 0  # how much of it went into the ring
        self._step = bytearray(_STEP)
        self._head = bytearray(_RECORD)
        # a collection costs time in proportion to the heap: worth it per chunk on a board
        # without PSRAM, where the heap is small and fragmentation is what runs out first
        self._collect = gc.mem_free() + gc.mem_alloc() < _SMALL_HEAP

    def _open(self, chunk):
        if len(chunk) > self.piece + _SLACK:
            raise FormatError("bad_patch", "chunk longer than its piece allows")
        ring = self._ring
        while ring.any():  # what a refused chunk left unread
            ring.readinto(self._step)
        self._chunk, self._fed = memoryview(chunk), 0  # slices of it are views, not copies
        # The inflate window and state (2.3 KiB at 10 bits) are the allocations a chunk costs.
        # On a small heap they are collected first, so the new ones take the place of the last
        # chunk's instead of a spot a fragmented heap may not have (bench/bench_delta.py).
        if self._collect:
            gc.collect()
        return deflate.DeflateIO(ring, deflate.RAW, self.window_bits)

    def _fill(self, stream, buf):
        """Exactly len(buf) bytes from the inflating stream, or a typed refusal."""
        done = 0
        while done < len(buf):
            self._top_up()
            try:
                n = stream.readinto(buf[done:], _STEP)
            except EOFError:  # the chunk ran out, or the stream needs more input ahead than the ring holds
                raise FormatError("bad_patch", "chunk ends early")
            except (OSError, ValueError):  # as the port raises them for bad input
                raise FormatError("bad_patch", "corrupt deflate stream")
            if not n:
                raise FormatError("bad_patch", "chunk ends early")
            done += n

    def _top_up(self):
        chunk, fed = self._chunk, self._fed
        if fed < len(chunk):
            self._fed = fed + self._ring.write(chunk[fed:] if fed else chunk)

    def _close(self, stream):
        """The chunk must end where its piece does: more output is a bomb or a forgery, more
        input is not part of the stream."""
        self._top_up()
        try:
            extra = stream.readinto(self._head, 1)
        except (OSError, ValueError, EOFError):  # as the port raises them for bad input
            raise FormatError("bad_patch", "corrupt deflate stream")
        if extra:
            raise FormatError("bad_patch", "chunk inflates past its piece")
        if self._fed < len(self._chunk) or self._ring.any():
            raise FormatError("bad_patch", "bytes after the chunk's stream")

    def deflate(self, chunk, length):
        """The `length` plain bytes that `chunk` inflates to."""
        stream = self._open(chunk)
        out = memoryview(self._out)[:length]
        self._fill(stream, out)
        self._close(stream)
        return out

    def delta(self, chunk, length):
        """The `length` bytes of the new image that patch `chunk` produces from the base."""
        stream = self._open(chunk)
        out = memoryview(self._out)
        head = memoryview(self._head)
        self._fill(stream, head[:4])
        old = struct.unpack_from("<I", head)[0]
        pos = 0
        while pos < length:
            self._fill(stream, head)
            n_diff, n_extra, step = struct.unpack("<HHi", head)
            if n_diff + n_extra == 0 or pos + n_diff + n_extra > length:
                raise FormatError("bad_patch", "record outside its piece")
            if old < 0 or old + n_diff > self.base_size:
                raise FormatError("bad_patch", "record outside the base image")
            if n_diff:
                self._read_base(old, out[pos : pos + n_diff])
                self._add_diff(stream, out[pos : pos + n_diff])
            pos += n_diff
            self._fill(stream, out[pos : pos + n_extra])
            pos += n_extra
            old += n_diff + step
        self._close(stream)
        return out[:length]

    def _read_base(self, offset, buf):
        self.base.readblocks(offset // _SECTOR, buf, offset % _SECTOR)

    def _add_diff(self, stream, dst):
        step = self._step
        done = 0
        while done < len(dst):
            n = min(_STEP, len(dst) - done)
            self._fill(stream, memoryview(step)[:n])
            add_into(dst, done, step, n)  # type: ignore[arg-type]  # viper takes any buffer as ptr8
            done += n
