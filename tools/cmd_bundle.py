"""`mpota bundle`: app bundles, the files of an application updated without its firmware.

`bundle build DIR -o app.bundle` packs DIR (its main.py and everything beside it) into one
bundle; `--mpy-arch armv6m` (Pico W) or `xtensawin` (ESP32) compiles the modules to .mpy first.
Then sign and publish it as a firmware image: `mpota manifest app.bundle ...` sees a bundle and
makes an app-bundle manifest, `mpota sign`, `mpota publish`. docs/BUNDLES.md explains the rest.
"""
from pathlib import Path

from mpota import bundle
from mpota.cli import CliError

LAUNCHER = Path(__file__).resolve().parents[1] / "boards" / "rp2" / "main.py"  # main.py of a board with bundles


def cmd_build(args):
    try:
        data = bundle.build(args.folder, args.mpy_arch)
    except (bundle.BundleError, OSError) as exc:
        raise CliError(str(exc))
    Path(args.out).write_bytes(data)
    print("%s: %d bytes, %d files" % (args.out, len(data), len(bundle.read_table(data))))
    return 0


def cmd_show(args):
    try:
        entries = bundle.read_table(Path(args.bundle).read_bytes())
    except (bundle.BundleError, OSError) as exc:
        raise CliError(str(exc))
    for path, size, digest in entries:
        print("%8d  %s  %s" % (size, digest.hex()[:16], path))
    return 0


def stage_first(out, path, version):
    """Write bundle file `path` into a provisioning folder as the board's first bundle
    (apps/a, and its record: confirmed, counter 0); returns the paths written."""
    try:
        files = bundle.installed_files(Path(path).read_bytes(), release=None, version=version, counter=0)
    except (bundle.BundleError, OSError) as exc:
        raise CliError("--bundle %s: %s" % (path, exc))
    written = []
    for name, data in files.items():
        target = Path(out) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        written.append(target)
    return written


def register(subparsers):
    p = subparsers.add_parser("bundle", help="app bundles: an application's files as one signed update",
                              description=__doc__)
    sub = p.add_subparsers(dest="bundle_command", metavar="SUBCOMMAND", required=True)
    b = sub.add_parser("build", help="pack a folder (with its main.py) into an app bundle")
    b.add_argument("folder", help="the application's folder: main.py, modules, data files")
    b.add_argument("-o", "--out", required=True, help="bundle file to write")
    b.add_argument("--mpy-arch", metavar="ARCH",
                   help="compile .py (except main.py) with mpy-cross for ARCH: armv6m (Pico W), xtensawin (ESP32)")
    b.set_defaults(func=cmd_build)
    s = sub.add_parser("show", help="list a bundle's files, sizes and digests")
    s.add_argument("bundle")
    s.set_defaults(func=cmd_show)
