"""`mpota sim rp2-new` and `sim rp2-run`: simulated Pico W boards (docs/SIMULATOR.md, rp2).

A Pico W board is one file, its flash storage region (848 KiB) holding MicroPython's LittleFS;
`rp2-new` makes an erased one (a board fresh from the factory) and copies a folder onto it,
`rp2-run` powers it on, `rp2-board` serves it on a pseudo-terminal for mpremote."""
import sys
from pathlib import Path

from mpota.cli import CliError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "boards" / "unix"))
from rp2host import board, fs, vboard  # noqa: E402


def cmd_new(args):
    board.new_board(args.flash)
    if args.files:
        try:
            fs.copy_tree(args.flash, args.files)
        except (OSError, RuntimeError) as exc:
            raise CliError(str(exc))
    print("%s: a Pico W with erased storage%s" % (args.flash, ", %s copied in" % args.files if args.files else ""))
    return 0


def parse_uid(text, size, example):
    """--uid: `size` bytes in hex, or None when not given."""
    if text is None:
        return None
    try:
        uid = bytes.fromhex(text)
    except ValueError:
        uid = b""
    if len(uid) != size:
        raise CliError("--uid takes %d bytes in hex, e.g. %s" % (size, example))
    return uid


def _uid(args):
    return parse_uid(args.uid, 8, "e660583883000001")


def cmd_board(args):
    try:
        return vboard.run(args.flash, heapsize=args.heapsize, uid=_uid(args))
    except FileNotFoundError as exc:
        raise CliError(str(exc))


def cmd_run(args):
    uid = _uid(args)
    try:
        return board.run(args.flash, heapsize=args.heapsize, halt_on_idle=args.halt_on_idle, max_boots=args.max_boots,
                         timeout=args.timeout, uid=uid, cut_at=args.cut_at, seed=args.seed,
                         stop_at_idle=args.stop_at_idle)
    except FileNotFoundError as exc:
        raise CliError(str(exc))


def register(sub):
    p = sub.add_parser("rp2-new", help="make a simulated Pico W: erased storage, optionally a folder copied in")
    p.add_argument("--flash", required=True, help="the board's storage file to create (848 KiB)")
    p.add_argument("--files", help="a folder to copy onto the board's filesystem (boot.py, main.py, lib/...)")
    p.set_defaults(func=cmd_new)

    p = sub.add_parser("rp2-run", help="power a simulated Pico W on and run its boot loop")
    p.add_argument("--flash", required=True, help="the board's storage file")
    p.add_argument("--heapsize", default="256K", help="MicroPython heap (default 256K: about the 190 KB of a Pico W with "
                   "Wi-Fi up, for the unix port's 64-bit objects)")
    p.add_argument("--halt-on-idle", action="store_true", help="exit 0 when main.py has finished and no watchdog is armed")
    p.add_argument("--stop-at-idle", action="store_true",
                   help="exit 0 as soon as main.py has finished, even with the watchdog armed (tests)")
    p.add_argument("--max-boots", type=int, help="stop before boot N+1")
    p.add_argument("--timeout", type=float, help="stop after this many seconds (exit 1)")
    p.add_argument("--uid", help="machine.unique_id() as 16 hex digits (default: derived from --flash)")
    p.add_argument("--cut-at", type=int, metavar="N", help="cut the power during the N-th flash program or erase")
    p.add_argument("--seed", type=int, default=1, help="seed of the torn bits of a cut (default 1)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("rp2-board", help="serve a simulated Pico W on a pseudo-terminal for mpremote (a virtual board)",
                       description="Power the Pico W on behind a pseudo-terminal and print its path (e.g. /dev/pts/7); "
                       "`mpremote connect PATH ...` then talks to it as to a board on USB. Serves until killed.")
    p.add_argument("--flash", required=True, help="the board's storage file (make one with rp2-new)")
    p.add_argument("--heapsize", default="256K", help="MicroPython heap (default 256K)")
    p.add_argument("--uid", help="machine.unique_id() as 16 hex digits (default: derived from --flash)")
    p.set_defaults(func=cmd_board)


if __name__ == "__main__":  # `python -m mpota.rp2sim rp2-run ...`: the same commands without loading the whole CLI
    import argparse

    parser = argparse.ArgumentParser(prog="mpota sim")
    register(parser.add_subparsers(dest="command", required=True))
    parsed = parser.parse_args()
    try:
        sys.exit(parsed.func(parsed))
    except CliError as exc:
        print("error: %s" % exc, file=sys.stderr)
        sys.exit(2)
