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
import io
import struct

from micropython import const

from ota.errors import FormatError

_RECORD = const(8)  # u16 diff length, u16 extra length, i32 base step
_STEP = const(256)  # diff bytes inflated and added at a time
_SECTOR = const(4096)
_SLACK = const(64)  # an encoded chunk is at most piece + 64 bytes

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
        # A native stream, filled anew for each chunk: DeflateIO pulls its input a byte at a time,
        # and a Python stream class costs a method call per byte (9x slower under the unix port).
        self._in = io.BytesIO(piece + _SLACK)  # capacity reserved once: writes never reallocate
        self._step = bytearray(_STEP)
        self._head = bytearray(_RECORD)

    def _open(self, chunk):
        # The inflate window is the one allocation a chunk costs, freed after it.
        if len(chunk) > self.piece + _SLACK:
            raise FormatError("bad_patch", "chunk longer than its piece allows")
        self._in.seek(0)
        self._in.write(chunk)
        self._in.seek(0)
        return deflate.DeflateIO(self._in, deflate.RAW, self.window_bits)

    def _close(self, stream, chunk):
        # The stream must end inside the chunk: the buffer past it holds an earlier chunk's bytes.
        _end(stream, self._head)
        if self._in.tell() > len(chunk):
            raise FormatError("bad_patch", "chunk ends early")

    def deflate(self, chunk, length):
        """The `length` plain bytes that `chunk` inflates to."""
        stream = self._open(chunk)
        out = memoryview(self._out)[:length]
        _fill(stream, out)
        self._close(stream, chunk)
        return out

    def delta(self, chunk, length):
        """The `length` bytes of the new image that patch `chunk` produces from the base."""
        stream = self._open(chunk)
        out = memoryview(self._out)
        head = memoryview(self._head)
        _fill(stream, head[:4])
        old = struct.unpack_from("<I", head)[0]
        pos = 0
        while pos < length:
            _fill(stream, head)
            n_diff, n_extra, step = struct.unpack("<HHi", head)
            if n_diff + n_extra == 0 or pos + n_diff + n_extra > length:
                raise FormatError("bad_patch", "record outside its piece")
            if old < 0 or old + n_diff > self.base_size:
                raise FormatError("bad_patch", "record outside the base image")
            if n_diff:
                self._read_base(old, out[pos : pos + n_diff])
                self._add_diff(stream, out[pos : pos + n_diff])
            pos += n_diff
            _fill(stream, out[pos : pos + n_extra])
            pos += n_extra
            old += n_diff + step
        self._close(stream, chunk)
        return out[:length]

    def _read_base(self, offset, buf):
        self.base.readblocks(offset // _SECTOR, buf, offset % _SECTOR)

    def _add_diff(self, stream, dst):
        step = self._step
        done = 0
        while done < len(dst):
            n = min(_STEP, len(dst) - done)
            _fill(stream, memoryview(step)[:n])
            add_into(dst, done, step, n)  # type: ignore[arg-type]  # viper takes any buffer as ptr8
            done += n


def _fill(stream, buf):
    """Exactly len(buf) bytes from the inflating stream, or a typed refusal."""
    done = 0
    while done < len(buf):
        try:
            n = stream.readinto(buf[done:])
        except (OSError, ValueError, EOFError):  # as the port raises them for bad input
            raise FormatError("bad_patch", "corrupt deflate stream")
        if not n:
            raise FormatError("bad_patch", "chunk ends early")
        done += n


def _end(stream, scratch):
    """The chunk must end where its piece does: more output is a bomb or a forgery."""
    try:
        extra = stream.readinto(memoryview(scratch)[:1])
    except (OSError, ValueError, EOFError):  # as the port raises them for bad input
        raise FormatError("bad_patch", "corrupt deflate stream")
    if extra:
        raise FormatError("bad_patch", "chunk inflates past its piece")
