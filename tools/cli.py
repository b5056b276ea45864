"""The `mpota` command: one CLI, one module per family of subcommands.

Each `tools/cmd_*.py` module defines `register(subparsers)`, adding its subcommands with
`set_defaults(func=...)`. A subcommand returns an exit code (0 on success); errors that the user
can fix raise `CliError`, printed as one line with exit code 2. Exit code 1 means "checked and
refused" (a signature that does not verify, a rollout that halted).
"""
import argparse
import importlib
import importlib.metadata
import pkgutil
import sys

import mpota

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
DISTRIBUTION = "micropython-ota-tools"


class CliError(Exception):
    """A problem the user can fix; the message says what to do."""


def read_file(path):
    """The bytes of a file the user named, or a CliError that says why not."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise CliError("cannot read %s: %s" % (path, exc.strerror)) from None


def version():
    """The installed distribution's version; a source checkout that was never installed says so."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "(not installed: pip install -e .)"


def build_parser():
    parser = argparse.ArgumentParser(
        prog="mpota",
        description="Secure over-the-air updates for MicroPython devices: make keys, sign and "
        "publish releases, roll them out and watch the fleet.",
    )
    parser.add_argument("--version", action="version", version="mpota %s" % version())
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(mpota.__path__), key=lambda m: m.name):
        if info.name.startswith("cmd_"):
            importlib.import_module("mpota." + info.name).register(subparsers)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.func(args) or EXIT_OK
    except CliError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        if exc.filename is None:  # not about a file the user named: a bug, keep the traceback
            raise
        print("error: %s: %s" % (exc.filename, exc.strerror), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
