"""`mpota provision` prepares, flashes and deploys one board; `mpota mpy` builds the `.mpy` package.

Commands go to stdout one per line, shell-quoted, exactly as run; notes go to stderr, so
`mpota provision --dry-run ... > steps.sh` is a script to review and run by hand.
"""
import getpass
import os
import sys
from pathlib import Path

from mpota import cmd_bundle, mpy, provision
from mpota.cli import EXIT_REFUSED, CliError

PORT_PLACEHOLDER = "PORT"
WIFI_PASSWORD_ENV = "MPOTA_WIFI_PASSWORD"


def note(text):
    print(text, file=sys.stderr)


def _password(path):
    if path is None:
        return None
    try:
        text = Path(path).read_text().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError("cannot read the password file %s: %s" % (path, exc))
    if not text:
        raise CliError("the password file %s is empty" % path)
    return text


def _wifi(args):
    """The `wifi` settings; the password from $MPOTA_WIFI_PASSWORD or a prompt, never an argument."""
    if not args.wifi_ssid:
        if args.wifi_open or args.wifi_hostname or args.wifi_country or args.wifi_ifconfig:
            raise CliError("--wifi-open, --wifi-hostname, --wifi-country and --wifi-ifconfig need --wifi-ssid")
        return None
    password = None
    if not args.wifi_open:
        password = os.environ.get(WIFI_PASSWORD_ENV)
        if password is None:
            if not sys.stdin.isatty():
                raise CliError("no Wi-Fi password: set $%s, run in a terminal to be asked, or pass --wifi-open"
                               % WIFI_PASSWORD_ENV)
            password = getpass.getpass("Wi-Fi password for %s: " % args.wifi_ssid)
    return provision.wifi_config(args.wifi_ssid, password, hostname=args.wifi_hostname, country=args.wifi_country,
                                 ifconfig=args.wifi_ifconfig)


def _check_args(args):
    if (args.cert or args.key) and (args.user or args.password_file):
        raise CliError("authenticate with --cert/--key or with --user/--password-file, not both")
    if args.password_file and not args.user:
        raise CliError("--password-file needs --user")
    if args.erase and not args.firmware:
        raise CliError("--erase needs --firmware: an erased board has no MicroPython to deploy to")


def cmd_provision(args):
    _check_args(args)
    out = Path(args.out or Path("build") / "provision" / args.device_id).resolve()
    try:
        config = provision.device_config(
            args.device_id, args.broker, board=args.board, fleet=args.fleet, group=args.group,
            tls_client=bool(args.cert), user=args.user, password=_password(args.password_file),
            server_hostname=args.server_hostname, wifi=_wifi(args))
        credentials = provision.read_credentials(args.ca, args.cert, args.key)
        trust = provision.read_trust(args.trust)
        port = args.port or PORT_PLACEHOLDER
        commands = []
        if args.firmware:
            commands += provision.flash_commands(port, Path(args.firmware).resolve(), chip=args.chip,
                                                 baud=args.baud, erase=args.erase)
        main = args.main or (cmd_bundle.LAUNCHER if args.bundle else provision.ROOT / "main.py")
        romfs = out.with_name(out.name + ".romfs") if args.romfs else None
        staged = provision.stage(out, config=config, trust=trust, credentials=credentials, arch=args.arch,
                                 main=main, firmware_version=args.firmware_version, romfs=romfs)
        if args.bundle:  # a board with app bundles: its first bundle, installed and confirmed
            staged += cmd_bundle.stage_first(out, args.bundle, args.bundle_version)
        commands += provision.deploy_commands(port, out, args.tool, romfs=romfs)
    except provision.ProvisionError as exc:
        raise CliError(str(exc))
    where = "the ROMFS image %s" % romfs if romfs else "lib/ota"
    note("staged %d files for %s in %s (the package as %s .mpy in %s)" % (len(staged), args.device_id, out,
                                                                        args.arch, where))
    if provision.KEY_FILE in credentials:
        note("%s is the device's private key (mode 0600): delete the staging folder once deployed"
             % (out / provision.KEY_FILE))
    if not args.port or args.dry_run:
        note("not run%s:" % ("" if args.port else "; with the board on a serial port, replace PORT"))
        for command in commands:
            print(provision.quote(command))
        return 0
    try:
        provision.run(commands)
    except provision.CommandFailed as exc:
        print("error: %s" % exc, file=sys.stderr)
        return EXIT_REFUSED
    note("%s is provisioned" % args.device_id)
    return 0


def cmd_mpy(args):
    for arch in args.arch or ("xtensawin", "armv6m"):
        try:
            files = mpy.build(arch, Path(args.out) / arch / "ota")
        except mpy.BuildError as exc:
            raise CliError(str(exc))
        sizes = [f.stat().st_size for f in files]
        for f, size in zip(files, sizes):
            print("%8d  %s" % (size, f))
        print("%8d  total, %d files for %s; mip package %s" % (sum(sizes), len(files), arch,
                                                           mpy.mip_package(Path(args.out) / arch, files)))
    return 0


def register(subparsers):
    p = subparsers.add_parser(
        "provision",
        help="prepare one board: identity, credentials, trust file, config; flash and deploy it",
        description="Stage a board's filesystem (lib/ota as .mpy, boot.py, main.py, ota_config.json, "
        ".ota/trust.bin, certs/) in --out. With --port, flash --firmware with esptool and copy the "
        "staging folder with mpremote (or ampy) then reset the board; --dry-run prints those "
        "commands instead. See docs/PROVISIONING.md.")
    p.add_argument("--device-id", required=True, help="the board's id: 1-64 characters, none of / + #")
    p.add_argument("--trust", required=True, help="trust file from `mpota keygen`")
    p.add_argument("--broker", required=True, metavar="HOST[:PORT]", help="MQTT broker (TLS; port default 8883)")
    p.add_argument("--ca", required=True, help="PEM certificate of the CA that signed the broker's certificate")
    p.add_argument("--cert", help="the device's PEM certificate (mutual TLS)")
    p.add_argument("--key", help="the device's unencrypted PEM private key (mutual TLS)")
    p.add_argument("--user", help="MQTT user name")
    p.add_argument("--password-file", help="file holding the MQTT password (it is written into ota_config.json)")
    p.add_argument("--server-hostname", help="name to check the broker's certificate against (default: HOST)")
    p.add_argument("--fleet", default="default", help="fleet topic level (default: default)")
    p.add_argument("--group", help="rollout group (e.g. canary)")
    p.add_argument("--board", default="esp32-generic", help="board class id releases are signed for (default: esp32-generic)")
    p.add_argument("--arch", default="xtensawin", choices=sorted(mpy.ARCH_CODES),
                   help="mpy-cross architecture: xtensawin for ESP32 (default), armv6m for RP2040; "
                   "bytecode runs on any port, the unix port included")
    p.add_argument("--romfs", action="store_true",
                   help="put the package in a ROMFS image (OUT.romfs, deployed with `mpremote romfs deploy`) "
                   "instead of lib/: its bytecode then runs from flash and takes no heap. Needs firmware with "
                   "ROMFS support and a romfs partition (boards/esp32/partitions-4MiB-ota-romfs.csv)")
    p.add_argument("--main", help="the board's main.py (default: the project's; with --bundle, the bundle launcher)")
    p.add_argument("--bundle", metavar="FILE",
                   help="a first app bundle (`mpota bundle build`) to install in apps/a; main.py is then "
                   "the launcher that runs the active bundle (boards/rp2/main.py, docs/BUNDLES.md)")
    p.add_argument("--bundle-version", default="1", help="the version the first bundle reports (default: 1)")
    p.add_argument("--out", help="staging folder (default: build/provision/DEVICE_ID); rebuilt each run")
    p.add_argument("--wifi-ssid", help="Wi-Fi network the board joins; its password comes from $%s or a "
                   "prompt. Without it the application brings the network up itself" % WIFI_PASSWORD_ENV)
    p.add_argument("--wifi-open", action="store_true", help="the Wi-Fi network has no password")
    p.add_argument("--wifi-hostname", help="the board's DHCP host name")
    p.add_argument("--wifi-country", help="Wi-Fi country code, e.g. DE")
    p.add_argument("--wifi-ifconfig", metavar="IP,NETMASK,GATEWAY,DNS", help="static addresses instead of DHCP")
    p.add_argument("--firmware-version", help="the version of the MicroPython firmware on the board, which it "
                   "reports until its first update (official builds do not carry one the board can read)")
    p.add_argument("--port", help="serial port of the board, e.g. /dev/ttyUSB0")
    p.add_argument("--firmware", help="full MicroPython image (ESP32_GENERIC OTA variant) to flash first")
    p.add_argument("--chip", default="esp32", help="esptool chip name (default: esp32; flashed at 0x1000)")
    p.add_argument("--baud", type=int, default=460800, help="esptool baud rate (default: 460800)")
    p.add_argument("--erase", action="store_true", help="erase the whole flash before writing the firmware")
    p.add_argument("--tool", default="mpremote", choices=("mpremote", "ampy"), help="deploy tool (default: mpremote)")
    p.add_argument("--dry-run", action="store_true", help="stage, then print the commands without running them")
    p.set_defaults(func=cmd_provision)

    m = subparsers.add_parser(
        "mpy", help="compile lib/ota to .mpy for board architectures",
        description="Compile lib/ota/*.py with mpy-cross into OUT/ARCH/ota/*.mpy, print the sizes, and "
        "write OUT/ARCH/package.json: a mip package of those .mpy files.")
    m.add_argument("--arch", action="append", choices=sorted(mpy.ARCH_CODES),
                   help="architecture; repeatable (default: xtensawin and armv6m)")
    m.add_argument("--out", default="build/mpy", help="output folder (default: build/mpy)")
    m.set_defaults(func=cmd_mpy)
