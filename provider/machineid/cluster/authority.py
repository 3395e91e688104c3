"""The cluster's certificate authorities: created on first start, persisted in the backend sealed with a key that
is not in it (so every server sharing a backend signs with the same keys, and a copy of the database alone signs
nothing), and the signing operations on them.

SSH user and host CAs are Ed25519; the X.509 CA is ECDSA P-256 (see machineid.api.certs for why).
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from machineid.api import certs
from machineid.cluster import x509_issuance
from machineid.cluster.sealing import KeySource
from machineid.cluster.store.base import Backend
from machineid.model.errors import AlreadyExistsError, NotFoundError, PreconditionError

log = logging.getLogger("machineid.cluster")
# Backend kind for the CA key material (sealed: see sealing.py); never served by any RPC.
CA_KIND = "cert_authority_keys"
SSH_USER_EXTENSIONS = (b"permit-X11-forwarding", b"permit-agent-forwarding", b"permit-port-forwarding",
                       b"permit-pty", b"permit-user-rc")


def new_serial() -> int:
    """A random 64-bit certificate serial, never 0 (a KRL cannot revoke serial 0)."""
    return int.from_bytes(os.urandom(8), "big") or 1


def _ed25519_pem(key: ed25519.Ed25519PrivateKey) -> str:
    return certs.private_key_pem(key)


@dataclass
class Authority:
    cluster_name: str
    user_ca: ed25519.Ed25519PrivateKey
    host_ca: ed25519.Ed25519PrivateKey
    tls_key: ec.EllipticCurvePrivateKey
    tls_cert: x509.Certificate

    @classmethod
    def load_or_create(cls, backend: Backend, cluster_name: str, keys: KeySource) -> Authority:
        """The CAs from the backend, unsealed with the server's sealing key; created (sealed) on a cluster's first
        start, and sealed in place when an earlier version stored them in clear."""
        context = f"the CA keys of cluster {cluster_name}"
        while True:
            try:
                item = backend.get(CA_KIND, cluster_name)
            except NotFoundError:
                sealer = keys.load(create=True)
                new_key, new_cert = x509_issuance.new_tls_ca(cluster_name)
                secret = {
                    "user_ca": _ed25519_pem(ed25519.Ed25519PrivateKey.generate()),
                    "host_ca": _ed25519_pem(ed25519.Ed25519PrivateKey.generate()),
                    "tls_key": certs.private_key_pem(new_key),
                }
                try:
                    backend.create(CA_KIND, cluster_name, {"tls_cert": certs.cert_pem(new_cert),
                                                           "sealed": sealer.seal(secret, context)})
                except AlreadyExistsError:  # another server sharing the backend won the race
                    continue
                return cls._from(cluster_name, secret, certs.cert_pem(new_cert))
            value = item.value
            if "sealed" in value:
                return cls._from(cluster_name, keys.load(create=False).unseal(value["sealed"], context),
                                 value["tls_cert"])
            # Written in clear by an earlier version: seal it now (conditional on the revision: another server
            # sharing the backend may be doing the same).
            secret = {k: value[k] for k in ("user_ca", "host_ca", "tls_key")}
            sealed = {"tls_cert": value["tls_cert"], "sealed": keys.load(create=True).seal(secret, context)}
            try:
                backend.update(CA_KIND, cluster_name, sealed, item.revision)
            except (PreconditionError, NotFoundError):
                continue
            log.warning("the CA keys of cluster %s were stored in clear by an earlier version; they are sealed now "
                        "with the key from %s (keep it: the cluster cannot sign without it)", cluster_name,
                        (keys.command and "--ca-key-command") or (keys.environ and "MACHINEID_CA_KEY") or keys.file)
            return cls._from(cluster_name, secret, value["tls_cert"])

    @classmethod
    def _from(cls, cluster_name: str, secret: dict[str, str], tls_cert: str) -> Authority:
        user_ca = certs.load_private_key(secret["user_ca"])
        host_ca = certs.load_private_key(secret["host_ca"])
        tls_key = certs.load_private_key(secret["tls_key"])
        assert isinstance(user_ca, ed25519.Ed25519PrivateKey) and isinstance(host_ca, ed25519.Ed25519PrivateKey)
        assert isinstance(tls_key, ec.EllipticCurvePrivateKey)
        return cls(cluster_name, user_ca, host_ca, tls_key, x509.load_pem_x509_certificate(tls_cert.encode()))

    @functools.cached_property
    def tls_ca_pem(self) -> str:
        return certs.cert_pem(self.tls_cert)

    @functools.cached_property
    def pin(self) -> str:
        return certs.ca_pin(self.tls_ca_pem)

    @functools.cached_property
    def user_ca_line(self) -> str:
        return certs.ssh_public_key_line(self.user_ca.public_key(), f"{self.cluster_name}-user-ca")

    @functools.cached_property
    def host_ca_line(self) -> str:
        return certs.ssh_public_key_line(self.host_ca.public_key())

    @staticmethod
    def _ssh_builder(public_key: certs.PublicKey, kind: serialization.SSHCertificateType, key_id: str,
                     principals: list[str], not_before: datetime,
                     not_after: datetime, serial: int | None = None) -> serialization.SSHCertificateBuilder:
        return (
            serialization.SSHCertificateBuilder()
            .public_key(public_key)
            .serial(new_serial() if serial is None else serial)
            .type(kind)
            .key_id(key_id.encode())
            .valid_principals([p.encode() for p in principals])
            .valid_after(int(not_before.timestamp()))
            .valid_before(int(not_after.timestamp()))
        )

    def sign_ssh_user(self, public_key: certs.PublicKey, key_id: str, principals: list[str],
                      not_before: datetime, not_after: datetime, extensions: dict[str, bytes] | None = None,
                      serial: int | None = None) -> str:
        builder = self._ssh_builder(public_key, serialization.SSHCertificateType.USER, key_id, principals,
                                    not_before, not_after, serial)
        # cryptography wants extensions in name order (OpenSSH's rule); ours sort among the permit-* ones.
        named = {ext.decode(): b"" for ext in SSH_USER_EXTENSIONS}
        named.update(extensions or {})
        for name in sorted(named):
            builder = builder.add_extension(name.encode(), named[name])
        return builder.sign(self.user_ca).public_bytes().decode()

    def sign_ssh_host(self, public_key: certs.PublicKey, key_id: str, principals: list[str],
                      not_before: datetime, not_after: datetime) -> str:
        builder = self._ssh_builder(public_key, serialization.SSHCertificateType.HOST, key_id, principals,
                                    not_before, not_after)
        return builder.sign(self.host_ca).public_bytes().decode()

    def sign_tls_client(self, public_key: certs.PublicKey, ident: certs.CertIdentity, not_after: datetime) -> str:
        cert = x509_issuance.issue_client_cert(self.tls_key, self.tls_cert, public_key, ident, not_after)
        return certs.cert_pem(cert)

    def sign_document(self, payload: bytes) -> bytes:
        """Documents the cluster hands out and later takes back (a bound keypair's join state): signed with the
        X.509 CA key, which every server sharing the backend holds, so any of them can check one."""
        return self.tls_key.sign(payload, ec.ECDSA(hashes.SHA256()))

    def verify_document(self, payload: bytes, signature: bytes) -> bool:
        try:
            self.tls_key.public_key().verify(signature, payload, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True
