"""`mpota keygen`: make a release signing key and the device trust file for it."""
import getpass
import os
import sys
from pathlib import Path

from tools import signing
from tools.cli import CliError, read_file

PASSWORD_ENV = "MPOTA_KEY_PASSWORD"


def read_password(confirm=False):
    """The private key's password: from $MPOTA_KEY_PASSWORD, else asked on the terminal."""
    password = os.environ.get(PASSWORD_ENV)
    if password is None:
        if not sys.stdin.isatty():  # getpass would read a script's stdin, or fail with EOFError
            raise CliError("no terminal to ask the key password on: set $%s (or use --no-password "
                           "for an unencrypted key)" % PASSWORD_ENV)
        password = getpass.getpass("key password: ")
        if confirm and getpass.getpass("again: ") != password:
            raise CliError("the passwords differ")
    if not password:
        raise CliError("empty password (use --no-password to write the key unencrypted)")
    return password


def private_key(path, no_password):
    """The P-256 signing key in `path`, or a CliError that names the file and what to do."""
    data = read_file(path)
    if b"PRIVATE KEY" not in data:
        raise CliError("%s is not a private key (a public key or a certificate?): pass the key file "
                       "`mpota keygen --out` wrote" % path)
    encrypted = b"ENCRYPTED PRIVATE KEY" in data or b"Proc-Type: 4,ENCRYPTED" in data
    if encrypted and no_password:
        raise CliError("%s is encrypted: drop --no-password and give its password in $%s" % (path, PASSWORD_ENV))
    try:
        return signing.load_private_key(path, read_password() if encrypted else None)
    except signing.FormatError as exc:
        raise CliError("%s; release keys are P-256 (make one with `mpota keygen`)" % exc) from None
    except (ValueError, TypeError):
        if encrypted:
            raise CliError("wrong password for %s (from $%s or the terminal)" % (path, PASSWORD_ENV)) from None
        raise CliError("%s is not a PEM private key that can be read" % path) from None


def public_key(path):
    """The P-256 public key in `path` (PEM key or certificate), or a CliError naming the file."""
    read_file(path)
    try:
        return signing.load_public_key(path)
    except signing.FormatError as exc:
        raise CliError(str(exc)) from None
    except ValueError:
        raise CliError("%s is not a PEM public key or certificate: pass the .pub.pem file `mpota keygen` "
                       "wrote" % path) from None


def keygen(args):
    key_path = Path(args.out)
    if key_path.exists():
        raise CliError("%s exists; not overwriting a private key" % key_path)
    also = [public_key(p) for p in args.also_trust]
    key = signing.generate_key()
    password = None if args.no_password else read_password(confirm=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(signing.private_key_pem(key, password))
    pub_path = Path(args.pub or key_path.with_suffix(".pub.pem"))
    pub_path.write_bytes(signing.public_key_pem(key.public_key()))
    trusted = [key.public_key()] + also
    size = signing.write_trust_file(trusted, args.trust, args.teeth)
    print("private key  %s (%s)" % (key_path, "unencrypted" if args.no_password else "encrypted"))
    print("public key   %s  key id %s" % (pub_path, signing.public_key_id(key.public_key()).hex()))
    print("trust file   %s  %d bytes, %d key(s): copy it to the device as %s" % (args.trust, size, len(trusted), signing.TRUST_PATH))


def register(subparsers):
    p = subparsers.add_parser(
        "keygen",
        help="make a P-256 release signing key and the device trust file",
        description="Make a P-256 release signing key. Writes the private key (PKCS#8 PEM, "
        "encrypted with the password from $%s or the terminal), its public key, and the trust "
        "file that goes onto each device at provisioning as %s: the public keys with "
        "precomputed tables, so the device verifies fast and builds nothing. Keep the private "
        "key offline; the signing can also be done elsewhere (see `mpota attach`)." % (PASSWORD_ENV, signing.TRUST_PATH),
    )
    p.add_argument("--out", required=True, help="private key file to create (never overwritten)")
    p.add_argument("--pub", help="public key file (default: OUT with .pub.pem)")
    p.add_argument("--trust", default="trust.bin", help="device trust file to write (default: trust.bin)")
    p.add_argument("--also-trust", action="append", default=[], metavar="PUB_PEM",
                   help="another public key the devices must trust too (key rotation); repeatable")
    p.add_argument("--teeth", type=int, default=signing.TRUST_TEETH,
                   help="comb table size: 7 costs 16 KB of device RAM per key (default), 6 costs 8 KB and is ~15%% slower")
    p.add_argument("--no-password", action="store_true", help="write the private key unencrypted (tests only)")
    p.set_defaults(func=keygen)
