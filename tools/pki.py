"""A small PKI made with `cryptography`: one CA, server certificates (127.0.0.1/localhost unless
other host names are given), and per-device client certificates whose CN is the device id
(mosquitto's `use_identity_as_username` turns it into the MQTT username the ACL sees).

The demo and the tests use a throw-away CA (`PKI(dir)`); a fleet keeps its CA on disk
(`PKI.open(dir)`) and revokes devices with a certificate revocation list (`crl()`)."""
import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_DAY = datetime.timedelta(days=1)


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _host(name):
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def private_dir(path):
    """A folder for private keys: made 0700 (its parents as the umask says)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def write_private(path, data):
    """Write a private key readable by its owner only from its first byte: a fresh file created
    0600 (O_EXCL: no older file's mode carries over), then renamed over the name. An interrupted
    run leaves at most a 0600 leftover, never a readable key; nothing is chmod-ed afterwards."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def _pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _pem_cert(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


class PKI:
    """CA plus issued certificates, written as PEM files under `directory` (a 0700 folder; keys
    0600 from their first byte)."""

    def __init__(self, directory, ca_name="micropython-ota local CA", *, days=30, ca_key=None, ca_cert=None):
        self.dir = private_dir(directory)
        self.days = days
        self.ca_key = ca_key or ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        self.ca_cert = ca_cert or (
            x509.CertificateBuilder()
            .subject_name(_name(ca_name))
            .issuer_name(_name(ca_name))
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _DAY)
            .not_valid_after(now + days * _DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.ca_key.public_key()), critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )
        self.ca_pem = _pem_cert(self.ca_cert)
        self.ca_der = self.ca_cert.public_bytes(serialization.Encoding.DER)
        self.ca_file = self._write("ca.crt", self.ca_pem)

    @classmethod
    def open(cls, directory, ca_name="micropython-ota fleet CA", days=3650):
        """The CA kept in `directory` (ca.crt, ca.key), created there on first use: a fleet's
        certificates must stay valid across runs of the tools."""
        d = Path(directory)
        if (d / "ca.key").exists():
            key = serialization.load_pem_private_key((d / "ca.key").read_bytes(), None)
            return cls(d, ca_key=key, ca_cert=x509.load_pem_x509_certificate((d / "ca.crt").read_bytes()), days=days)
        pki = cls(d, ca_name, days=days)
        write_private(d / "ca.key", _pem_key(pki.ca_key))
        return pki

    def crl(self, serials, days=30):
        """A CRL in PEM revoking the certificates with these serial numbers (mosquitto's
        `crlfile`: a revoked device fails the TLS handshake)."""
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (x509.CertificateRevocationListBuilder().issuer_name(self.ca_cert.subject)
                   .last_update(now - datetime.timedelta(minutes=5)).next_update(now + days * _DAY))
        for serial in sorted(serials):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build())
        return builder.sign(self.ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    def _write(self, name, data):
        path = self.dir / name
        path.write_bytes(data)
        return path

    def forget(self, cn):
        """Delete the private key issued for `cn` (a revoked device's key has no use left)."""
        for name in (cn + ".key", cn + ".key.tmp"):
            try:
                (self.dir / name).unlink()
            except FileNotFoundError:
                pass

    def issue(self, cn, *, server=False, hosts=("localhost", "127.0.0.1")):
        """Issue a leaf for `cn` (a server's for `hosts`); returns dict with cert/key PEM and DER
        bytes, file paths and the serial number."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _DAY)
            .not_valid_after(now + self.days * _DAY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()), critical=False
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_host(h) for h in hosts]),
                critical=False,
            ).add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        else:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
            )
        cert = builder.sign(self.ca_key, hashes.SHA256())
        leaf = {
            "cert_pem": _pem_cert(cert),
            "key_pem": _pem_key(key),
            "cert_der": cert.public_bytes(serialization.Encoding.DER),
            "serial": cert.serial_number,
            "key_der": key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
            ),
        }
        leaf["cert_file"] = self._write(cn + ".crt", leaf["cert_pem"])
        leaf["key_file"] = write_private(self.dir / (cn + ".key"), leaf["key_pem"])
        return leaf
