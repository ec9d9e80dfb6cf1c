"""A lab node's runtimed serving certificate, signed at pod start: ``python -m runtime.nodecert``.

Under ``SANDBOX_BACKEND=kubernetes`` the web tier and the workers reach each lab node's
runtimed at ``https://<Node InternalIP>:7443`` and trust only the platform's runtimed CA
(``RUNTIME_CA``, runtime/placement.py). The Helm chart runs this module in an init container
of runtimed's DaemonSet pod (deploy/helm/kubelab/README.md, "runtimed's TLS"): it signs a
fresh leaf for this node's IP and name with the CA from a Secret that only that init
container mounts, and writes the leaf and its key to a memory volume runtimed reads. The CA
key never reaches runtimed's long-running container, the node agent, web or the workers.

The leaf: an EC P-256 key made here, ``subjectAltName`` = the node's IP address(es) and name,
``extendedKeyUsage=serverAuth``, not a CA, valid ``--days``. Any CA key type the
``cryptography`` package loads (RSA from helm's ``genCA``, ECDSA or Ed25519 from cert-manager
or openssl) signs it. ``--trust FILE`` checks that the CA certificate in the Secret is the one
the clients are given (the chart's ConfigMap), so a mismatch stops the pod with a message
instead of every connection failing later.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey


class CertError(Exception):
    """A CA or an argument this module cannot use; the message says which and why."""


def _read_ca(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, SigningKey]:
    try:
        certs = x509.load_pem_x509_certificates(cert_path.read_bytes())
    except (OSError, ValueError) as e:
        raise CertError(f"{cert_path}: not a PEM certificate: {e}") from None
    ca = certs[0]
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise CertError(f"{key_path}: not an unencrypted PEM private key: {e}") from None
    if not isinstance(key, SigningKey):
        raise CertError(f"{key_path}: a {type(key).__name__} cannot sign certificates")
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, pub) != ca.public_key().public_bytes(
        serialization.Encoding.DER, pub
    ):
        raise CertError(f"{key_path} is not the key of the CA certificate {cert_path}")
    try:
        constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise CertError(f"{cert_path}: not a CA certificate (basicConstraints CA:TRUE is missing)")
    return ca, key


def sign_node_cert(
    ca_cert_pem: bytes,
    ca_key_pem: bytes,
    *,
    ips: list[str],
    names: list[str],
    days: int = 365,
) -> tuple[bytes, bytes]:
    """(cert PEM, key PEM) of a serving certificate for ``ips`` and ``names`` signed by the CA."""
    if not ips:
        raise CertError("at least one IP address is needed: clients connect to the node's InternalIP")
    if not 1 <= days <= 3650:
        raise CertError(f"--days: between 1 and 3650, got {days}")
    addresses = []
    for ip in ips:
        try:
            addresses.append(ipaddress.ip_address(ip))
        except ValueError:
            raise CertError(f"{ip!r} is not an IP address") from None
    ca = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    assert isinstance(ca_key, SigningKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    sans: list[x509.GeneralName] = [x509.IPAddress(a) for a in addresses]
    sans += [x509.DNSName(n) for n in names if n]
    cn = names[0] if names and names[0] else str(addresses[0])
    hash_alg = None if isinstance(ca_key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey) else hashes.SHA256()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"runtimed {cn}"[:64])]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(ca_key, hash_alg)
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), pem_key


def _write(path: Path, data: bytes, mode: int) -> None:
    # created with its final mode (no umask games: this may run beside other work)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
    finally:
        os.close(fd)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m runtime.nodecert",
        description="sign this lab node's runtimed serving certificate with the platform's runtimed CA",
    )
    p.add_argument("--ca-cert", type=Path, required=True, help="PEM certificate of the CA (tls.crt)")
    p.add_argument("--ca-key", type=Path, required=True, help="PEM private key of the CA (tls.key)")
    p.add_argument("--trust", type=Path, help="the CA certificate the clients trust: must be --ca-cert's")
    p.add_argument("--ip", action="append", default=[], help="the node's IP address (repeat for several)")
    p.add_argument("--name", action="append", default=[], help="the node's name (a DNS name in the certificate)")
    p.add_argument("--days", type=int, default=365, help="validity of the leaf (default 365)")
    p.add_argument("--out", type=Path, required=True, help="directory for tls.crt and tls.key")
    args = p.parse_args(argv)
    try:
        ca, _key = _read_ca(args.ca_cert, args.ca_key)
        if args.trust is not None:
            try:
                trusted = x509.load_pem_x509_certificates(args.trust.read_bytes())
            except (OSError, ValueError) as e:
                raise CertError(f"{args.trust}: not a PEM certificate: {e}") from None
            if ca not in trusted:
                raise CertError(
                    f"the CA certificate {args.ca_cert} is not the one the web tier and the workers trust "
                    f"({args.trust}): they would refuse this node's runtimed. Give the chart the certificate of "
                    "the CA Secret's key (runtimed.tls.caCertificate)."
                )
        ips = [ip for ip in (x.strip() for raw in args.ip for x in raw.replace(",", " ").split()) if ip]
        cert, key = sign_node_cert(
            args.ca_cert.read_bytes(), args.ca_key.read_bytes(), ips=ips, names=list(args.name), days=args.days
        )
    except CertError as e:
        print(f"runtime.nodecert: {e}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    _write(args.out / "tls.key", key, 0o600)
    _write(args.out / "tls.crt", cert, 0o644)
    print(f"runtime.nodecert: signed runtimed's certificate for {', '.join(ips + list(args.name))} ({args.days} days)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
