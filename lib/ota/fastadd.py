"""The delta decoder's byte loop as viper code: compiled to machine code on the board.

Only in `.py` form or in `.mpy` built with `-march` (native code has an architecture); a plain
bytecode build leaves this module out and `ota.encoding` falls back to its Python loop."""
import micropython


@micropython.viper
def add_into(dst: ptr8, start: int, src: ptr8, n: int):
    for i in range(n):
        dst[start + i] = (dst[start + i] + src[i]) & 0xFF
