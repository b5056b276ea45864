"""`mpota demo`: see tools/demo.py."""
from mpota import demo


def _run(args):
    return demo.main(args.devices, args.keep)


def register(subparsers):
    p = subparsers.add_parser(
        "demo", help="run the whole system on this machine: broker, simulated boards, a good and a bad release",
        description="Start mosquitto with TLS on a free loopback port, make a signing key, provision simulated "
        "ESP32 boards, publish a good release (every board installs and confirms it), then a bad one "
        "(every board rolls back by itself), with a live table. Exit 0 when the story ends as it should.")
    p.add_argument("--devices", type=int, default=5, help="how many simulated boards (default 5)")
    p.add_argument("--keep", action="store_true", help="keep the working folder (logs, flash files)")
    p.set_defaults(func=_run)
