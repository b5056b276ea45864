"""Device-side fuzzing harness, run by the MicroPython unix port (tests/host/test_fuzz.py).

    micropython -c "import fuzz_harness; fuzz_harness.main('mqtt', seed, cases, corpus_dir)"

A target (fuzz_targets.py) is a class with `__init__(corpus_dir)` and `case(rng)`, which builds
one input from the corpus and the random source and feeds it to the code under test. The only
acceptable outcomes are a return or a typed `OTAError`; anything else is counted as untyped and
its input kept (hex) so the host can print a reproducer. A target may also count invariant
violations it checks itself (`violations`) and what its cases reached (`stats`). The summary is one JSON line on stdout."""
import json
import sys

from ota.errors import OTAError

_BYTES = (0x00, 0x01, 0x02, 0x7F, 0x80, 0x81, 0xFE, 0xFF)
_WORDS = (0, 1, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)


class Rng:
    """xorshift32: the same cases for a seed on every port and every run."""

    def __init__(self, seed):
        self.s = (seed * 2654435761 + 0x9E3779B9) & 0xFFFFFFFF or 1

    def next(self):
        x = self.s
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.s = x
        return x

    def below(self, n):
        return self.next() % n if n > 0 else 0

    def chance(self, one_in):
        return self.below(one_in) == 0

    def pick(self, seq):
        return seq[self.below(len(seq))]

    def bytes(self, n):
        return bytes(self.next() & 0xFF for _ in range(n))


def mutate(rng, data, rounds=0):
    """A damaged copy of `data`: flipped bits, boundary bytes and words, cuts, inserts, repeats.
    (MicroPython's bytearray cannot change length in place: pieces are joined instead.)"""
    b = bytes(data)
    for _ in range(rounds or 1 + rng.below(4)):
        n = len(b)
        op = rng.below(8)
        at = rng.below(n) if n else 0
        if op in (0, 1, 7) and n:
            if op == 0:
                v = b[at] ^ (1 << rng.below(8))
            elif op == 1:
                v = rng.pick(_BYTES)
            else:
                v = rng.next() & 0xFF
            b = b[:at] + bytes((v,)) + b[at + 1:]
        elif op == 2 and n:
            b = b[:at]
        elif op == 3:
            b = b[:at] + rng.bytes(1 + rng.below(16)) + b[at:]
        elif op == 4 and n:
            start = rng.below(n)
            b = b[:at] + b[start:start + 1 + rng.below(32)] + b[at:]
        elif op == 5 and n:
            b = b[:at] + b[at + 1 + rng.below(16):]
        elif op == 6 and n > 4:
            size = rng.pick((2, 4))
            at = rng.below(n - size + 1)
            word = rng.pick(_WORDS).to_bytes(4, "big")[4 - size:]
            if rng.below(2):
                word = bytes(reversed(word))
            b = b[:at] + word + b[at + size:]
    return b


def main(name, seed, cases, corpus):
    import fuzz_targets

    target = getattr(fuzz_targets, name)(corpus)
    rng = Rng(seed)
    typed = {}
    ok = untyped = 0
    examples = []
    for i in range(cases):
        target.last = b""
        try:
            target.case(rng)
            ok += 1
        except OTAError as exc:
            typed[exc.reason] = typed.get(exc.reason, 0) + 1
        except Exception as exc:  # noqa: BLE001  (counting these is the point)
            untyped += 1
            if len(examples) < 5:
                last = target.last
                examples.append([i, repr(exc), last.hex() if isinstance(last, (bytes, bytearray)) else repr(last)])
    print(json.dumps({"target": name, "seed": seed, "cases": cases, "ok": ok, "typed": typed, "untyped": untyped,
                      "violations": getattr(target, "violations", 0), "stats": getattr(target, "stats", {}),
                      "examples": examples}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
