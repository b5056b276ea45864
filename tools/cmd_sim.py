"""`mpota sim`: run simulated ESP32 boards on the MicroPython unix port.

`sim image` builds a synthetic ESP32 app image whose firmware is a set of Python modules,
`sim new` makes a factory-fresh board with that image in ota_0, `sim run` powers it on, and
`sim board` serves it on a pseudo-terminal that mpremote can connect to. See docs/SIMULATOR.md
for what is modelled and docs/DEVICE_TESTS.md for the virtual board.
"""
import sys
from pathlib import Path

from mpota import fwimage, rp2sim
from mpota.cli import CliError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "boards" / "unix"))
import simhost  # noqa: E402
from simhost import supervisor, vboard  # noqa: E402


def _size(text):
    text = text.strip().upper()
    scale = {"K": 1024, "M": 1024 * 1024}.get(text[-1:], 1)
    return int(text.rstrip("KM"), 0) * scale


def cmd_image(args):
    modules = {}
    for spec in args.module:
        name, sep, path = spec.partition("=")
        if not sep or not name:
            raise CliError("--module takes NAME=FILE, e.g. --module _boot=boot_fw.py (got %r)" % spec)
        try:
            modules[name] = Path(path).read_text()
        except OSError as exc:
            raise CliError("cannot read module %s: %s" % (name, exc))
    try:
        image = fwimage.build_image(args.version, modules, size=args.size, secure_version=args.secure_version,
                                    app_version=args.app_version)
    except ValueError as exc:
        raise CliError(str(exc))
    Path(args.output).write_bytes(image)
    print("%s: %d bytes, version %s, %d modules" % (args.output, len(image), args.version, len(modules)))
    return 0


def cmd_new(args):
    try:
        image = Path(args.firmware).read_bytes()
        romfs = Path(args.romfs).read_bytes() if args.romfs else None
        supervisor.new_device(args.flash, args.fs, image, table_path=args.table, romfs=romfs)
    except (OSError, ValueError) as exc:
        raise CliError(str(exc))
    print("%s: blank board with %s in ota_0%s; filesystem %s" % (args.flash, args.firmware,
                                                               ", %s in romfs" % args.romfs if args.romfs else "", args.fs))
    return 0


def _uid(args):
    return rp2sim.parse_uid(args.uid, 6, "240ac4000001")


def cmd_run(args):
    uid = _uid(args)
    try:
        return supervisor.run(args.flash, args.fs, heapsize=args.heapsize, halt_on_idle=args.halt_on_idle,
                              max_boots=args.max_boots, timeout=args.timeout, uid=uid, table=args.table)
    except FileNotFoundError as exc:
        raise CliError(str(exc))


def cmd_board(args):
    uid = _uid(args)
    try:
        return vboard.run(args.flash, args.fs, heapsize=args.heapsize, uid=uid)
    except FileNotFoundError as exc:
        raise CliError(str(exc))


def _table_option(p):
    p.add_argument("--table", default=str(simhost.PARTITIONS),
                   help="partition table CSV (default: the OTA table, boards/esp32/partitions-4MiB-ota.csv; "
                   "partitions-4MiB-ota-romfs.csv adds a romfs partition)")


def register(subparsers):
    sim = subparsers.add_parser("sim", help="simulated ESP32 boards on the MicroPython unix port",
                                description=__doc__)
    sub = sim.add_subparsers(dest="sim_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser("image", help="build a synthetic ESP32 app image from Python modules")
    p.add_argument("--version", required=True, help="the image's name in the simulator's boot log")
    p.add_argument("--app-version", default="", help="version string of the app descriptor (max 31 bytes; "
                   "default empty, as in official MicroPython builds)")
    p.add_argument("--module", action="append", default=[], metavar="NAME=FILE",
                   help="a frozen module of the firmware (repeatable); `_boot` runs first at boot")
    p.add_argument("--size", type=_size, help="pad the image to this many bytes (a multiple of 16)")
    p.add_argument("--secure-version", type=int, default=0, help="secure_version of the app descriptor")
    p.add_argument("-o", "--output", required=True, help="image file to write")
    p.set_defaults(func=cmd_image)

    p = sub.add_parser("new", help="make a factory-fresh board: erased flash, FIRMWARE in ota_0")
    p.add_argument("--flash", required=True, help="flash file to create (4 MiB)")
    p.add_argument("--fs", required=True, help="the board's inbox folder: files put there (boot.py, main.py, lib/) are moved onto its LittleFS at the next boot")
    p.add_argument("--firmware", required=True, help="app image to put in ota_0, as esptool would")
    p.add_argument("--romfs", help="ROMFS image (`mpota provision --romfs`) to put in the romfs partition, as "
                   "`mpremote romfs deploy` would; needs --table with one")
    _table_option(p)
    p.set_defaults(func=cmd_new)

    p = sub.add_parser("run", help="power the board on and run its boot loop")
    p.add_argument("--flash", required=True, help="the board's flash file")
    p.add_argument("--fs", required=True, help="the board's inbox folder (moved onto its LittleFS at boot)")
    p.add_argument("--heapsize", default="100K", help="MicroPython heap (default 100K, an ESP32 without PSRAM)")
    p.add_argument("--halt-on-idle", action="store_true",
                   help="exit 0 when main.py has finished and no watchdog is armed")
    p.add_argument("--max-boots", type=int, help="stop before boot N+1")
    p.add_argument("--timeout", type=float, help="stop after this many seconds (exit 1)")
    p.add_argument("--uid", help="machine.unique_id() as 12 hex digits (default: derived from --flash)")
    _table_option(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("board", help="serve the board on a pseudo-terminal for mpremote (a virtual board)",
                       description="Power the board on behind a pseudo-terminal and print its path (e.g. "
                       "/dev/pts/7); `mpremote connect PATH ...` then talks to it as to a board on USB. "
                       "Runs until killed.")
    p.add_argument("--flash", required=True, help="the board's flash file")
    p.add_argument("--fs", required=True, help="the board's inbox folder (moved onto its LittleFS at boot)")
    p.add_argument("--heapsize", default="100K", help="MicroPython heap (default 100K, an ESP32 without PSRAM)")
    p.add_argument("--uid", help="machine.unique_id() as 12 hex digits (default: derived from --flash)")
    p.set_defaults(func=cmd_board)
    rp2sim.register(sub)  # simulated Pico W boards: tools/rp2sim.py
