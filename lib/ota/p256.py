"""ECDSA P-256 signature check over a SHA-256 digest, in pure MicroPython.

Trusted keys are fixed, so the host precomputes a comb table for G and one for each key
(`ota.trust`; read from the trust file entry by entry): a verify is then ceil(256/t) doublings and up to twice as many mixed additions in
Jacobian coordinates, with one inversion mod n and none mod p (x is compared projectively).
Only public data is handled, so nothing here needs to be constant time.
"""
from micropython import const

_P = const(0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF)
_N = const(0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551)
_B = const(0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B)
_TICK_COLUMNS = const(8)  # about 240 field operations between two calls of `tick`


def on_curve(x, y):
    """True if (x, y) is an affine point of P-256 (the point at infinity has no affine form)."""
    return 0 <= x < _P and 0 <= y < _P and (y * y - x * x * x + 3 * x - _B) % _P == 0


def _der_int(sig, i):
    # One strict DER INTEGER at sig[i]: short-form length, positive, minimal; (value, end) or None.
    if i + 2 > len(sig) or sig[i] != 2:
        return None
    n = sig[i + 1]
    i += 2
    end = i + n
    if n < 1 or n > 33 or end > len(sig) or sig[i] & 0x80:
        return None
    if n > 1 and sig[i] == 0 and not sig[i + 1] & 0x80:
        return None
    return int.from_bytes(sig[i:end], "big"), end


def decode_der(sig):
    """(r, s) from a strict DER ECDSA signature, or None for anything else (BER, trailing data)."""
    if len(sig) < 8 or len(sig) > 72 or sig[0] != 0x30 or sig[1] != len(sig) - 2:
        return None
    r = _der_int(sig, 2)
    s = r and _der_int(sig, r[1])
    if not s or s[1] != len(sig):
        return None
    return r[0], s[0]


def _inv(a, m):
    # Extended Euclid: pow(a, -1, m) returns 0 on MicroPython and pow(a, m-2, m) is 5x slower.
    x0, x1, b = 0, 1, m
    while a:
        q, r = divmod(b, a)
        b, a = a, r
        x0, x1 = x1, x0 - q * x1
    return x0 % m


def _dbl(X, Y, Z):
    # Jacobian doubling with a = -3 (7 reductions); Z = 0 (infinity) stays at infinity.
    p = _P
    d = Z * Z % p
    g = Y * Y % p
    b = X * g % p
    a = 3 * (X - d) * (X + d) % p
    X3 = (a * a - 8 * b) % p
    return X3, (a * (4 * b - X3) - 8 * g * g) % p, 2 * Y * Z % p


def _add(X, Y, Z, x, y):
    # Jacobian + affine; handles infinity, P + P and P + (-P) (Z = 0 means infinity).
    p = _P
    if not Z:
        return x, y, 1
    zz = Z * Z % p
    h = (x * zz - X) % p
    r = (y * zz * Z - Y) % p
    if not h:
        return (1, 1, 0) if r else _dbl(x, y, 1)
    hh = h * h % p
    hhh = h * hh % p
    v = X * hh % p
    X3 = (r * r - hhh - 2 * v) % p
    return X3, (r * (v - X3) - Y * hhh) % p, Z * h % p


def _column(k, pos, d, teeth):
    # Comb index of column `pos`: bit j is bit (pos + j*d) of the 32-byte big-endian scalar k.
    j = 0
    pos += (teeth - 1) * d
    for _ in range(teeth):
        j <<= 1
        if pos < 256 and k[31 - (pos >> 3)] >> (pos & 7) & 1:
            j |= 1
        pos -= d
    return j


def _entry(f, base, j, buf):
    # Comb table entry j (1-based) of the table at byte `base` of the trust file: affine (x, y).
    f.seek(base + (j - 1) * 64)
    if f.readinto(buf) != 64:
        raise ValueError("trust table")
    return int.from_bytes(buf[:32], "big"), int.from_bytes(buf[32:], "big")


def verify(digest, signature, key, tick=None):
    """True if the DER `signature` over the 32-byte `digest` is valid for `key`, else False.

    `key` is an `ota.trust.Key`: `open()` gives the trust file, `g` and `q` the byte offsets of
    the comb tables (entries 1..2**teeth-1, 64-byte big-endian x||y each), `teeth` their size;
    the key was checked on the curve when loaded. Entries are read one at a time, so the tables
    cost no RAM. `tick()`, if given, is called every few hundred field operations."""
    if len(digest) != 32:
        raise ValueError("digest")
    rs = decode_der(signature)
    if not rs:
        return False
    r, s = rs
    if not (0 < r < _N and 0 < s < _N):
        return False
    w = _inv(s, _N)
    u1 = (int.from_bytes(digest, "big") * w % _N).to_bytes(32, "big")
    u2 = (r * w % _N).to_bytes(32, "big")
    g, q, teeth = key.g, key.q, key.teeth
    d = (255 + teeth) // teeth
    buf = memoryview(bytearray(64))
    X = Y = 1
    Z = 0
    with key.open() as f:
        for i in range(d - 1, -1, -1):
            if Z:
                X, Y, Z = _dbl(X, Y, Z)
            j = _column(u1, i, d, teeth)
            if j:
                X, Y, Z = _add(X, Y, Z, *_entry(f, g, j, buf))
            j = _column(u2, i, d, teeth)
            if j:
                X, Y, Z = _add(X, Y, Z, *_entry(f, q, j, buf))
            if tick and not i % _TICK_COLUMNS:
                tick()
    if not Z:
        return False
    zz = Z * Z % _P
    # x(R) mod n == r means x(R) is r or r + n (the latter only when r + n < p).
    return X == r * zz % _P or (r + _N < _P and X == (r + _N) * zz % _P)
