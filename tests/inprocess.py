"""A cluster in this process with a clock the test moves: expiry and lifetimes are tested without sleeping."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from machineid.api import certs
from machineid.cluster.issuance import IssuedCerts
from machineid.cluster.sealing import KeySource
from machineid.cluster.service import Caller, Cluster
from machineid.cluster.store.sqlite import SQLiteBackend
from machineid.model import codec
from machineid.model.resources import Bot

CLUSTER = "test.example"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def new_cluster(tmp_path: Path, clock: Clock) -> Cluster:
    return Cluster(SQLiteBackend(tmp_path / "cluster.db"), CLUSTER, KeySource(tmp_path / "ca.key"), clock=clock)


def admin(c: Cluster) -> Caller:
    return c.caller_from_cert(certs.CertIdentity(user="admin", roles=["editor", "access"], cluster=CLUSTER))


def key_pem() -> str:
    return certs.public_key_pem(certs.new_key().public_key())


def add_bot(c: Cluster, name: str, roles: list[str] | None = None) -> str:
    """A bot; returns its join token."""
    _, token = c.create_bot(admin(c), codec.decode(Bot, {"metadata": {"name": name},
                                                         "spec": {"roles": roles or ["access"]}}))
    return token.metadata.name


def caller_of(c: Cluster, issued: IssuedCerts) -> Caller:
    """The caller the server sees when a client presents these certificates."""
    ident = certs.CertIdentity.from_cert(x509.load_pem_x509_certificate(issued.tls_cert.encode()))
    return c.caller_from_cert(ident)
