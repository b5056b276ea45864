"""`mpota manifest`, `sign`, `attach`, `verify`: make and check a signed release manifest.

Online flow: `manifest` then `sign`. Offline flow: `manifest` writes the exact bytes to sign;
sign them elsewhere (`openssl dgst -sha256 -sign key.pem`, an HSM, a cloud KMS); `attach` the
signature; `verify` before publishing.
"""
import hashlib
import json
import sys
from pathlib import Path

from cryptography.exceptions import InvalidSignature

from mpota import imagecheck, signing
from mpota.cli import EXIT_REFUSED, CliError
from mpota.cmd_keys import private_key, public_key


def _read(path):
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CliError("cannot read %s: %s" % (path, exc.strerror))


def manifest(args):
    if not (args.key_id or args.pub):
        raise CliError("name the signing key: --pub PUBLIC.pem or --key-id HEX")
    key_id = public_key(args.pub) if args.pub else args.key_id
    payload, encoding, base = _read(args.firmware), args.encoding, None
    target = args.target or ("bundle" if payload[:4] == b"MOTB" else "firmware")  # `mpota bundle build` output
    if args.delta_from:
        if encoding != "raw":
            raise CliError("--delta-from makes a delta release: leave out --encoding")
        if target != "firmware":
            raise CliError("a delta needs a firmware target: devices patch their running firmware only")
        base, encoding = _read(args.delta_from), "delta"
    try:
        if target == "firmware":
            imagecheck.check_app_image(payload, args.slot_size, args.firmware)
        if base is not None:
            check_base(base, payload, args.delta_from, args.slot_size)
        tbs = signing.build_manifest(
            payload, board=args.board, version=args.version, counter=args.counter,
            chunk_size=args.chunk_size, key_id=key_id, expiry=args.expiry, target=target,
            encoding=encoding, window_bits=args.window_bits, base=base,
        )
    except (signing.FormatError, ValueError) as exc:  # imagecheck.ImageError included
        raise CliError(str(exc))
    Path(args.out).write_bytes(tbs)
    wire = signing.parse_tbs(tbs)["wire_size"]
    print("wrote %s (%d bytes to sign); %s payload: %d bytes on the wire for %d bytes (%.1f %%)" % (
        args.out, len(tbs), encoding, wire, len(payload), 100.0 * wire / len(payload)))


def check_base(base, firmware, name, slot_size):
    """Refuse a delta base no device would run: an app image that passes the checks the board
    makes before it boots one (imagecheck), for the chip of `firmware` (an app image, checked)."""
    try:
        imagecheck.check_app_image(base, slot_size, name)
    except imagecheck.ImageError as exc:
        raise CliError("%s; devices run app images only, so no device could take a delta from it" % exc) from None
    if imagecheck.HEADER.unpack_from(base)[7] != imagecheck.HEADER.unpack_from(firmware)[7]:  # chip_id
        raise CliError("%s is built for another chip than the new firmware: no device runs it" % name)
    if base == firmware:
        raise CliError("%s is the new firmware itself: nothing to patch" % name)


def sign(args):
    tbs = _read(args.tbs)
    try:
        signing.parse_tbs(tbs)
    except signing.FormatError as exc:
        raise CliError("%s is not a manifest from `mpota manifest`: %s" % (args.tbs, exc)) from None
    blob = signing.sign(tbs, private_key(args.key, args.no_password))
    Path(args.out).write_bytes(blob)
    print("wrote %s (%d bytes), release id %s" % (args.out, len(blob), signing.manifest_id(blob)))


def attach(args):
    try:
        blob = signing.attach(_read(args.tbs), _read(args.signature))
    except signing.FormatError as exc:
        raise CliError(str(exc))
    Path(args.out).write_bytes(blob)
    print("wrote %s (%d bytes), release id %s; check it with `mpota verify`" % (args.out, len(blob), signing.manifest_id(blob)))


def verify(args):
    blob, key = _read(args.blob), public_key(args.pub)
    try:
        fields = signing.verify(blob, key)
        if args.firmware:
            payload = _read(args.firmware)
            if len(payload) != fields["size"] or hashlib.sha256(payload).digest() != fields["digest"]:
                raise signing.FormatError("%s does not match the manifest's size and digest" % args.firmware)
    except (signing.FormatError, InvalidSignature) as exc:
        print("REFUSED: %s" % (str(exc) or "the signature does not match the manifest and this key"),
              file=sys.stderr)
        return EXIT_REFUSED
    fields = {k: v.hex() if isinstance(v, bytes) else v for k, v in fields.items()}
    print(json.dumps(fields, indent=2, sort_keys=True))
    return 0


def register(subparsers):
    p = subparsers.add_parser("manifest", help="write the to-be-signed manifest for a firmware image",
                              description="Write the manifest (format v2) for FIRMWARE (a .bin or .app-bin): the "
                              "exact bytes that get signed, committing to the image's digest and to a table of "
                              "per-chunk digests (docs/FORMAT.md). Then `mpota sign`, or sign elsewhere and "
                              "`mpota attach`.")
    p.add_argument("firmware")
    p.add_argument("--board", required=True, help="board class the image is for (e.g. esp32-generic)")
    p.add_argument("--version", required=True, help="human version, up to 32 characters")
    p.add_argument("--counter", type=int, required=True,
                   help="security counter: devices refuse a lower one than they have; raise it to retire old releases")
    p.add_argument("--chunk-size", type=int, default=4096, help="transfer chunk size in bytes (256..65536, default 4096)")
    p.add_argument("--expiry", type=int, help="Unix time after which devices refuse it (devices with no time refuse "
                   "an expiring release)")
    p.add_argument("--target", choices=sorted(signing.TARGETS),
                   help="what the payload is: a firmware image, an app bundle, or a trust file; default: a bundle "
                   "when the payload is one (`mpota bundle build`), else firmware; trust files "
                   "come from `mpota key rotate`")
    p.add_argument("--encoding", choices=["raw", "deflate"], default="raw",
                   help="how chunks travel: raw (default) or deflate (each chunk compressed on its own)")
    p.add_argument("--delta-from", metavar="OLD.bin",
                   help="make a delta release: chunks patch OLD.bin, the app image devices run now, into FIRMWARE. "
                   "Publish it beside the full release (`mpota publish --delta`); devices running OLD.bin take it")
    p.add_argument("--window-bits", type=int, default=10,
                   help="deflate window for deflate and delta, 9..15 (device RAM: 2^bits bytes; default 10)")
    p.add_argument("--slot-size", type=lambda text: int(text, 0), default=imagecheck.default_slot_size(),
                   help="the board's app slot size in bytes: larger images are refused here, not after the "
                   "upload (default: 0x%x, MicroPython's ESP32 OTA table)" % imagecheck.default_slot_size())
    p.add_argument("--pub", help="public key (PEM) of the key that will sign")
    p.add_argument("--key-id", help="or its key id (16 hex characters, printed by keygen)")
    p.add_argument("-o", "--out", required=True, help="file for the to-be-signed bytes")
    p.set_defaults(func=manifest)

    p = subparsers.add_parser("sign", help="sign a manifest with a private key file",
                              description="Sign the manifest TBS with a PEM private key (password from "
                              "$MPOTA_KEY_PASSWORD or the terminal) and write the blob devices receive.")
    p.add_argument("tbs")
    p.add_argument("--key", required=True, help="private key PEM")
    p.add_argument("--no-password", action="store_true", help="the key file is not encrypted")
    p.add_argument("-o", "--out", required=True)
    p.set_defaults(func=sign)

    p = subparsers.add_parser("attach", help="attach a signature made elsewhere (openssl, HSM, KMS)",
                              description="Attach SIGNATURE over the manifest TBS, made elsewhere, e.g. "
                              "`openssl dgst -sha256 -sign key.pem -out sig TBS`. Accepts DER (openssl, AWS and "
                              "Google KMS) or 64-byte raw r||s (PKCS#11, Azure Key Vault); the blob carries strict DER.")
    p.add_argument("tbs")
    p.add_argument("signature")
    p.add_argument("-o", "--out", required=True)
    p.set_defaults(func=attach)

    p = subparsers.add_parser("verify", help="check a signed manifest on the host (exit 1 if refused)",
                              description="Check BLOB's format and signature against a public key, and "
                              "optionally that FIRMWARE matches it; print the fields as JSON. Exit 1 if refused.")
    p.add_argument("blob")
    p.add_argument("--pub", required=True, help="public key PEM (or a certificate)")
    p.add_argument("--firmware", help="also check this image's size and SHA-256")
    p.set_defaults(func=verify)
