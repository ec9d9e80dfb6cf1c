"""runtime/nodecert.py: a lab node's runtimed certificate, signed at pod start (the chart's
runtimed-cert init container). The whole path (chart CA → leaf → runtimed's TLS setup →
the platform's client) is in tests/deploy/test_helm_chart.py; here the CA checks and the leaf."""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from runtime import nodecert
from runtime.kube.apiserver import pki

REPO = Path(__file__).resolve().parents[2]


def _rsa_ca() -> tuple[bytes, bytes]:
    """An RSA CA, as helm's genCA makes."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubelab-runtimed-ca")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=10))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), pem


def run(tmp: Path, crt: bytes, key: bytes, *args: str, trust: bytes | None = None) -> subprocess.CompletedProcess[str]:
    (tmp / "ca.crt").write_bytes(crt)
    (tmp / "ca.key").write_bytes(key)
    extra = []
    if trust is not None:
        (tmp / "trust.crt").write_bytes(trust)
        extra = ["--trust", str(tmp / "trust.crt")]
    cmd = [sys.executable, "-m", "runtime.nodecert", "--ca-cert", str(tmp / "ca.crt"), "--ca-key", str(tmp / "ca.key")]
    return subprocess.run(
        [*cmd, *extra, "--out", str(tmp / "out"), *args], capture_output=True, text=True, timeout=60, cwd=REPO
    )


@pytest.mark.parametrize("make_ca", [_rsa_ca, lambda: pki.make_ca("ec-ca")], ids=["rsa", "ecdsa"])
def test_leaf_names_the_node_ip_and_name_for_server_auth_only(
    tmp_path: Path, make_ca: Callable[[], tuple[bytes, bytes]]
) -> None:
    crt, key = make_ca()
    r = run(tmp_path, crt, key, "--ip", "10.0.3.7", "--name", "lab-a", "--days", "30", trust=crt)
    assert r.returncode == 0, r.stderr
    leaf = x509.load_pem_x509_certificate((tmp_path / "out" / "tls.crt").read_bytes())
    ca = x509.load_pem_x509_certificate(crt)
    leaf.verify_directly_issued_by(ca)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.3.7")]
    assert san.get_values_for_type(x509.DNSName) == ["lab-a"]
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    assert (leaf.not_valid_after_utc - leaf.not_valid_before_utc).days == 30
    assert (tmp_path / "out" / "tls.key").stat().st_mode & 0o777 == 0o600


def test_a_key_that_is_not_the_cas_is_refused(tmp_path: Path) -> None:
    crt, _ = pki.make_ca("a")
    _, other_key = pki.make_ca("b")
    r = run(tmp_path, crt, other_key, "--ip", "10.0.0.1")
    assert r.returncode == 2
    assert "is not the key of the CA certificate" in r.stderr
    assert not (tmp_path / "out").exists()


def test_a_certificate_that_is_not_a_ca_is_refused(tmp_path: Path) -> None:
    ca_crt, ca_key = pki.make_ca("a")
    leaf, leaf_key = pki.make_serving_cert(ca_crt, ca_key, ["x"], ["10.0.0.1"])
    r = run(tmp_path, leaf, leaf_key, "--ip", "10.0.0.1")
    assert r.returncode == 2
    assert "not a CA certificate" in r.stderr


def test_a_ca_other_than_the_trusted_one_is_refused(tmp_path: Path) -> None:
    crt, key = pki.make_ca("a")
    trusted, _ = pki.make_ca("b")
    r = run(tmp_path, crt, key, "--ip", "10.0.0.1", trust=trusted)
    assert r.returncode == 2
    assert "is not the one the web tier and the workers trust" in r.stderr


@pytest.mark.parametrize(("args", "error"), [([], "at least one IP"), (["--ip", "lab-a"], "is not an IP address")])
def test_no_usable_ip_is_refused(tmp_path: Path, args: list[str], error: str) -> None:
    crt, key = pki.make_ca("a")
    r = run(tmp_path, crt, key, *args)
    assert r.returncode == 2
    assert error in r.stderr


def test_an_ed25519_ca_signs_too() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ed-ca")])
    now = datetime.datetime.now(datetime.UTC)
    ca = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=10))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, None)
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    crt, _ = nodecert.sign_node_cert(ca.public_bytes(serialization.Encoding.PEM), pem_key, ips=["::1"], names=[])
    x509.load_pem_x509_certificate(crt).verify_directly_issued_by(ca)
