"""A node's sync (its heartbeat): the node says it is alive (version, interval, the revision it enforces, and the
address it calls from), and gets back what it enforces: its labels and their revision, the user CA, the key
revocation list when it changed since the version the node holds (revocations.py), how long it may trust them
without a newer answer, and, when it asks with its host key, a host certificate for its names.

Only a node's own identity, at its current generation, may sync: the refusal comes before anything is looked up,
so a bot or user learns nothing about nodes here, and a copied older generation of a node's identity gets nothing
(the node renews first; a copy renewing locks the node, see renewal.py). Every input is bounded; host certificates
are audited (cert.issue_host), heartbeats are not (they only update the node's status record).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from machineid.api import certs
from machineid.cluster import node_status
from machineid.cluster.caller import Caller
from machineid.cluster.issuance import Issuer
from machineid.cluster.objects import Objects
from machineid.cluster.revocations import Revocations
from machineid.model import codec
from machineid.model import validators as v
from machineid.model.errors import FieldViolation, PermissionDeniedError, UnauthenticatedError, ValidationError
from machineid.model.resources import Node

MIN_HEARTBEAT = timedelta(seconds=1)
MAX_HEARTBEAT = timedelta(hours=24)
MAX_VERSION = 64
MAX_REVISION = 64
MAX_HOST_KEY = 1024  # an OpenSSH Ed25519 or P-256 public key line is well under this
MAX_ADDR = 64  # an IPv6 address with its zone fits
_PRINTABLE = re.compile(r"[\x21-\x7e]*")


@dataclass
class SyncRequest:
    version: str = ""
    heartbeat_interval: timedelta | None = None
    host_public_key: str = ""  # OpenSSH line; empty for a plain heartbeat
    applied_revision: str = ""
    peer: str = ""  # the address the call came from (the router's view of the client)
    revocations_version: int = 0  # the version of the revocation list the node holds


@dataclass
class SyncAnswer:
    node_name: str
    cluster_name: str
    labels: dict[str, str]
    revision: str
    host_cert_principals: list[str]
    ssh_user_ca_keys: list[str]
    revocation_max_age: timedelta
    host_cert_ttl: timedelta
    host_cert: str = ""
    host_cert_expires: datetime | None = None
    revocations_version: int = 0
    revoked_keys: bytes = b""  # the KRL, only when the node holds another version


def host_principals(node: Node, cluster_name: str) -> list[str]:
    """NAME, NAME.CLUSTER, addr's host and spec.hostnames, each once, in that order (the first is the key id)."""
    name = node.metadata.name
    host = node.spec.addr.rpartition(":")[0].strip("[]")
    return list(dict.fromkeys(p for p in (name, f"{name}.{cluster_name}", host, *node.spec.hostnames) if p))


def _check(req: SyncRequest) -> None:
    problems = []
    if len(req.version) > MAX_VERSION or not _PRINTABLE.fullmatch(req.version):
        problems.append(FieldViolation(("version",), f"must be at most {MAX_VERSION} printable characters without "
                                                     "spaces"))
    if req.heartbeat_interval is not None and not MIN_HEARTBEAT <= req.heartbeat_interval <= MAX_HEARTBEAT:
        problems.append(FieldViolation(("heartbeat_interval",), "must be between 1s and 24h"))
    if len(req.applied_revision) > MAX_REVISION or not _PRINTABLE.fullmatch(req.applied_revision):
        problems.append(FieldViolation(("applied_revision",), "is not a revision this cluster gave out"))
    if len(req.host_public_key) > MAX_HOST_KEY:
        problems.append(FieldViolation(("host_public_key",), f"is longer than {MAX_HOST_KEY} characters; send the "
                                                             "host's OpenSSH public key line"))
    if problems:
        raise ValidationError(problems)


def _host_key(text: str) -> certs.PublicKey:
    if text.startswith("-----"):
        raise ValidationError([FieldViolation(("host_public_key",), "send the host's OpenSSH public key line, not "
                                                                    "PEM")])
    try:
        return certs.load_public_key(text)
    except ValueError as e:
        raise ValidationError([FieldViolation(("host_public_key",), f"{e}; send the host's OpenSSH public key line "
                                                                    "(Ed25519 or ECDSA P-256)")]) from None


class NodeSync:
    def __init__(self, objects: Objects, issuer: Issuer, cluster_name: str) -> None:
        self.objects = objects
        self.issuer = issuer
        self.cluster_name = cluster_name
        self.revocations = Revocations(objects, issuer.authority.user_ca_line)

    def sync(self, caller: Caller, req: SyncRequest) -> SyncAnswer:
        ident = caller.ident
        if ident is None:
            raise UnauthenticatedError("a sync needs the node's identity (mutual TLS)")
        if not ident.node_name:
            self.objects.audit(caller, "access.denied", "node_sync", "denied", verb="sync")
            raise PermissionDeniedError(f"{caller.actor} may not sync as a node: only a node's own identity (from a "
                                        "join with a Node token) may")
        _check(req)
        key = _host_key(req.host_public_key) if req.host_public_key else None
        objects, name = self.objects, ident.node_name
        now = objects.clock()
        with objects.backend.transaction():
            node = objects.get(Node, name)
            status = node_status.get(objects, name)
            if ident.generation != status.generation:
                stale = (ident.generation, status.generation)
            else:
                stale = None
                principals = host_principals(node, self.cluster_name)
                if key is not None and len(principals) > v.MAX_HOST_PRINCIPALS:
                    raise ValidationError([FieldViolation(("spec", "hostnames"), f"the node has {len(principals)} "
                                                          f"host names; a certificate holds {v.MAX_HOST_PRINCIPALS}")])
                ttl = v.parse_duration(node.spec.host_cert_ttl)
                host_cert, expires = self.issuer.host_cert(key, principals, ttl) if key is not None else ("", None)
                status.last_heartbeat = now
                if req.heartbeat_interval is not None:
                    status.heartbeat_interval = v.format_duration(req.heartbeat_interval)
                status.version = req.version
                status.reported_addr = req.peer[:MAX_ADDR]
                status.applied_revision = req.applied_revision
                if expires is not None:
                    status.host_cert_expires = expires
                node_status.put(objects, name, status)
        if stale is not None:
            objects.audit(caller, "access.denied", f"node/{name}", "denied", verb="sync", presented=stale[0],
                          expected=stale[1])
            raise PermissionDeniedError("this identity is not the node's current generation; renew it first")
        if expires is not None:
            objects.audit(caller, "cert.issue_host", f"host/{principals[0]}", node=name, principals=principals,
                          expires=codec.format_time(expires))
        a = self.issuer.authority
        revoked = self.revocations.current()
        return SyncAnswer(
            node_name=name, cluster_name=self.cluster_name, labels=dict(node.metadata.labels),
            revision=node.metadata.revision, host_cert_principals=principals, ssh_user_ca_keys=[a.user_ca_line],
            revocation_max_age=v.parse_duration(node.spec.revocation_max_age), host_cert_ttl=ttl,
            host_cert=host_cert, host_cert_expires=expires, revocations_version=revoked.version,
            revoked_keys=revoked.data if req.revocations_version != revoked.version else b"",
        )
