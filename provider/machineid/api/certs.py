"""Key and certificate helpers shared by the cluster, the agent and the CLI (all with `cryptography`).

Key types: the SSH user and host CAs are Ed25519 (OpenSSH accepts them everywhere since 6.5, and they are what
current Teleport uses); the X.509 CA and the TLS keys are ECDSA P-256, which gRPC's TLS stack (BoringSSL) accepts
for both server and client certificates. An identity's key is ECDSA P-256 so the one key serves SSH and TLS.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ObjectIdentifier

from machineid.model.keys import PrivateKey as PrivateKey  # re-exported: the key types of every certificate
from machineid.model.keys import PublicKey as PublicKey
from machineid.model.keys import public_line

# gRPC clients override the TLS target name to this, so any address (IP, DNS, tunnel) reaches the server; the
# server certificate always carries it (Teleport's "teleport.cluster.local").
SERVER_NAME = "auth.machineid.cluster.local"
# The name unauthenticated clients (ping, join) ask for: the server routes it to a listener that requests no
# client certificate, because gRPC's Python TLS either requires one or never asks for one.
JOIN_SERVER_NAME = "join.machineid.cluster.local"
# X.509 extension carrying the identity (JSON) in client certificates.
IDENTITY_OID = ObjectIdentifier("1.3.9999.42.1")
NODE_USER_PREFIX = "node:"


def node_user(node_name: str) -> str:
    """The user a node's identity speaks as (audit records name it so)."""
    return NODE_USER_PREFIX + node_name



def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def load_private_key(pem: str | bytes) -> PrivateKey:
    key = serialization.load_pem_private_key(pem.encode() if isinstance(pem, str) else pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        raise ValueError("only ECDSA and Ed25519 keys are supported")
    return key


def public_key_pem(key: PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


_PEM_END = b"-----END PUBLIC KEY-----"


def load_public_key(pem: str) -> PublicKey:
    """PEM SubjectPublicKeyInfo or an OpenSSH public key line, strictly: one key, nothing before or after it (a
    lenient parser would certify a key while something else rode along), P-256 or Ed25519 only."""
    data = pem.strip().encode()
    if data.startswith(b"-----") and (data.count(b"-----BEGIN") != 1 or not data.endswith(_PEM_END)):
        raise ValueError("not exactly one PEM public key (nothing may follow -----END PUBLIC KEY-----)")
    if not data.startswith(b"-----") and b"\n" in data:
        raise ValueError("an OpenSSH public key is one line")
    try:
        key = (
            serialization.load_pem_public_key(data)
            if data.startswith(b"-----")
            else serialization.load_ssh_public_key(data)
        )
    except Exception as e:  # cryptography raises ValueError or UnsupportedAlgorithm
        raise ValueError("not a PEM or OpenSSH public key") from e
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError("ECDSA keys must use P-256")
        return key
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    raise ValueError("only ECDSA (P-256) and Ed25519 public keys are accepted")


ssh_public_key_line = public_line


def ca_pin(cert_pem: str | bytes) -> str:
    """sha256: + hex SHA-256 of the certificate's DER SubjectPublicKeyInfo (Teleport's CA pin)."""
    cert = x509.load_pem_x509_certificate(cert_pem.encode() if isinstance(cert_pem, str) else cert_pem)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


_PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def split_pem_certs(text: str) -> list[str]:
    return [m.group(0) + "\n" for m in _PEM_CERT.finditer(text)]


@dataclass
class CertIdentity:
    """Who a client certificate speaks for; signed into the certificate so the server needs no session state.

    A node's identity (a join with a Node token) names the node in `node_name`, its user is `node:NAME` (no user
    object: a ':' is never in a user's name) and it carries no roles: it may call only the node RPCs."""

    user: str
    roles: list[str]
    traits: dict[str, list[str]] = field(default_factory=dict)
    cluster: str = ""
    bot_name: str = ""
    renewable: bool = False
    generation: int = 0
    instance_id: str = ""
    node_name: str = ""

    def to_json(self) -> bytes:
        data = asdict(self)
        if not self.node_name:
            del data["node_name"]  # a bot's or user's certificate reads as before to a server that predates nodes
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_cert(cls, cert: x509.Certificate) -> CertIdentity:
        ext = cert.extensions.get_extension_for_oid(IDENTITY_OID).value
        if not isinstance(ext, x509.UnrecognizedExtension):
            raise ValueError("malformed identity extension")
        return cls(**json.loads(ext.value))
