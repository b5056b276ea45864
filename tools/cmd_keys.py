"""`mpota keygen`: make a signing key and the device trust file for it. `mpota key rotate` and
`mpota key revoke`: change what every device trusts, over the air, with a signed trust update."""
import getpass
import os
import sys
from pathlib import Path

from mpota import signing
from mpota.cli import CliError, read_file

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


def _roles(text):
    try:
        return signing.role_mask(text.split(","))
    except signing.FormatError as exc:
        raise CliError(str(exc)) from None


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
    role = _roles(args.role)
    also = [public_key(p) for p in args.also_trust]
    key = signing.generate_key()
    password = None if args.no_password else read_password(confirm=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(signing.private_key_pem(key, password))
    pub_path = Path(args.pub or key_path.with_suffix(".pub.pem"))
    pub_path.write_bytes(signing.public_key_pem(key.public_key()))
    print("private key  %s (%s)" % (key_path, "unencrypted" if args.no_password else "encrypted"))
    print("public key   %s  key id %s  roles %s" % (pub_path, signing.public_key_id(key.public_key()).hex(), args.role))
    if role == signing.ROLE_TIMESTAMP:
        print("add it to the devices with `mpota key rotate --add %s --roles timestamp`" % pub_path)
        return
    trusted = [key.public_key()] + also
    size = signing.write_trust_file(trusted, args.trust, args.teeth,
                                    roles=[role] + [signing.ROLE_RELEASE | signing.ROLE_TRUST] * len(args.also_trust))
    print("trust file   %s  %d bytes, %d key(s): copy it to the device as %s" % (args.trust, size, len(trusted), signing.TRUST_PATH))


def _trust_update(args, add=(), remove=()):
    """Write the next trust file and its signed trust-update manifest; returns (serial, blob path)."""
    current = read_file(args.trust)
    signer = private_key(args.sign_key, args.no_password)
    signer_id = signing.public_key_id(signer.public_key()).hex()
    try:
        _, _, keys = signing.parse_trust_file(current)
        roles = {signing.public_key_id(pub).hex(): role for pub, role in keys}
        if not roles.get(signer_id, 0) & signing.ROLE_TRUST:
            raise CliError("key %s is not trusted with the trust role: devices would refuse this update" % signer_id)
        if signer_id in remove:
            raise CliError("sign the revocation with another trust key than the one revoked")
        new = signing.trust_update(current, add=add, remove=remove)
        serial = signing.parse_trust_file(new)[0]
        tbs = signing.build_manifest(new, board=args.board, version="trust-%d" % serial, counter=serial,
                                     chunk_size=4096, key_id=signer.public_key(), target="trust")
    except signing.FormatError as exc:
        raise CliError(str(exc)) from None
    out = Path(args.out)
    out.write_bytes(new)
    blob_path = out.with_name(out.name + ".manifest")
    blob_path.write_bytes(signing.sign(tbs, signer))
    print("trust file   %s  serial %d, %d key(s)" % (out, serial, len(signing.parse_trust_file(new)[2])))
    print("trust update %s  release id %s: `mpota publish %s %s --fleet ...`" % (
        blob_path, signing.manifest_id(tbs), blob_path, out))
    from mpota.cmd_publish import _audit

    _audit(args, "key_" + args.key_command, outcome="serial %d" % serial,
           reason=",".join(list(remove) + [signing.public_key_id(p).hex() for p, _ in add]))
    return serial


def rotate(args):
    if not args.add and not args.retire:
        raise CliError("say what changes: --add NEW.pub.pem (step 1) or --retire OLD_KEY_ID (step 2)")
    add = [(signing.load_public_key(p), _roles(args.roles)) for p in args.add]
    _trust_update(args, add=add, remove=args.retire)


def revoke(args):
    _trust_update(args, remove=[args.key_id])


def _add_update_arguments(p):
    p.add_argument("--trust", required=True, help="the trust file the devices have now")
    p.add_argument("--sign-key", required=True, help="a private key the devices trust with the trust role")
    p.add_argument("--no-password", action="store_true", help="the signing key file is not encrypted")
    p.add_argument("--board", required=True, help="board class of the devices (as in their releases)")
    p.add_argument("-o", "--out", required=True, help="the new trust file; its signed update goes to OUT.manifest")
    p.add_argument("--audit-dir", metavar="FLEET_DIR",
                   help="record this in the audit log of that fleet folder (default: $MPOTA_FLEET, if set)")


def register(subparsers):
    p = subparsers.add_parser(
        "keygen",
        help="make a P-256 signing key and the device trust file",
        description="Make a P-256 signing key. Writes the private key (PKCS#8 PEM, "
        "encrypted with the password from $%s or the terminal), its public key, and the trust "
        "file that goes onto each device at provisioning as %s: the public keys with "
        "precomputed tables, so the device verifies fast and builds nothing. Keep the private "
        "key offline; the signing can also be done elsewhere (see `mpota attach`)." % (PASSWORD_ENV, signing.TRUST_PATH),
    )
    p.add_argument("--out", required=True, help="private key file to create (never overwritten)")
    p.add_argument("--pub", help="public key file (default: OUT with .pub.pem)")
    p.add_argument("--trust", default="trust.bin", help="device trust file to write (default: trust.bin)")
    p.add_argument("--role", default="release,trust",
                   help="what the key may sign: release, trust (trust updates), timestamp (alone: the online "
                   "freshness key). Default release,trust; keep trust on a separate offline key for safety")
    p.add_argument("--also-trust", action="append", default=[], metavar="PUB_PEM",
                   help="another public key the devices must trust too (key rotation); repeatable")
    p.add_argument("--teeth", type=int, default=signing.TRUST_TEETH,
                   help="comb table size: 7 (default) makes a 16 KB trust file per key, 6 half that and ~15%% slower")
    p.add_argument("--no-password", action="store_true", help="write the private key unencrypted (tests only)")
    p.set_defaults(func=keygen)

    key = subparsers.add_parser(
        "key", help="rotate or revoke trusted keys on every device (signed trust updates)",
        description="Change the keys every device trusts, over the air: each command writes the next trust file "
        "(serial + 1, so an older one can never be replayed) and a trust update signed by a key the devices "
        "trust with the trust role; publish both with `mpota publish`. Rotation is two updates: --add the new "
        "key, move releases to it, then --retire the old one.")
    sub = key.add_subparsers(dest="key_command", metavar="ACTION", required=True)
    p = sub.add_parser("rotate", help="add a new key (step 1) or retire an old one (step 2)",
                       description="Step 1: --add NEW.pub.pem (both keys trusted). Step 2, once releases are "
                       "signed with the new key: --retire OLD_KEY_ID.")
    p.add_argument("--add", action="append", default=[], metavar="PUB_PEM", help="public key to trust from now on")
    p.add_argument("--roles", default="release,trust", help="roles of the added key (default release,trust)")
    p.add_argument("--retire", action="append", default=[], metavar="KEY_ID", help="key id to stop trusting")
    _add_update_arguments(p)
    p.set_defaults(func=rotate)
    p = sub.add_parser("revoke", help="stop trusting a compromised key on every device",
                       description="Remove KEY_ID from the trust file at once, signed by another trust key. "
                       "Devices refuse anything signed by it from then on.")
    p.add_argument("key_id", help="16 hex characters (printed by keygen and `mpota verify`)")
    _add_update_arguments(p)
    p.set_defaults(func=revoke)
