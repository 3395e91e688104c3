"""X.509 issuance by the cluster's CA: the CA certificate itself, the server's certificate, and the client
certificates that carry a CertIdentity. Server-side only (the api package holds what clients need: keys, pins and
reading identities)."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from machineid.api.certs import (
    IDENTITY_OID,
    JOIN_SERVER_NAME,
    SERVER_NAME,
    CertIdentity,
    PrivateKey,
    PublicKey,
    new_key,
)


def now() -> datetime:
    return datetime.now(UTC)


def new_tls_ca(cluster: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = new_key()
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, cluster),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"{cluster} machineid CA")])
    start = now() - timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    public_key: PublicKey,
    subject: x509.Name,
    not_after: datetime,
    eku: list[ObjectIdentifier],
) -> x509.CertificateBuilder:
    start = now() - timedelta(minutes=1)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )


def issue_server_cert(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, key: PrivateKey, hosts: list[str]
) -> x509.Certificate:
    names: list[x509.GeneralName] = [x509.DNSName(SERVER_NAME), x509.DNSName(JOIN_SERVER_NAME)]
    for h in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    builder = _leaf(ca_key, ca_cert, key.public_key(), x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                    SERVER_NAME)]), now() + timedelta(days=365), [ExtendedKeyUsageOID.SERVER_AUTH])
    return builder.add_extension(x509.SubjectAlternativeName(names), critical=False).sign(ca_key, hashes.SHA256())


def issue_client_cert(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    public_key: PublicKey,
    ident: CertIdentity,
    not_after: datetime,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ident.cluster),
                         x509.NameAttribute(NameOID.COMMON_NAME, ident.user)])
    builder = _leaf(ca_key, ca_cert, public_key, subject, not_after, [ExtendedKeyUsageOID.CLIENT_AUTH])
    builder = builder.add_extension(x509.UnrecognizedExtension(IDENTITY_OID, ident.to_json()), critical=False)
    return builder.sign(ca_key, hashes.SHA256())
