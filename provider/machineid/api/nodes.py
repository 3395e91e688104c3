"""What a node's sync answers, as plain data for the node agent (which talks to the cluster only through api/)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from machineid.api.v1 import cluster_pb2 as pb


@dataclass(frozen=True)
class NodeSync:
    node_name: str
    cluster_name: str
    labels: dict[str, str]
    revision: str  # of the node object the labels come from
    host_cert_principals: list[str]
    ssh_user_ca_keys: list[str]
    revocation_max_age: timedelta  # 0: the node may enforce these labels however old they get
    host_cert_ttl: timedelta
    host_cert: str = ""  # only when the sync sent a host key
    host_cert_expires: datetime | None = None
    revocations_version: int = 0  # the cluster's key revocation list now
    revoked_keys: bytes = b""  # that list (OpenSSH KRL), only when the node asked with another version

    @classmethod
    def from_pb(cls, reply: pb.NodeSyncResponse) -> NodeSync:
        return cls(
            node_name=reply.node_name, cluster_name=reply.cluster_name, labels=dict(reply.labels),
            revision=reply.revision, host_cert_principals=list(reply.host_cert_principals),
            ssh_user_ca_keys=list(reply.ssh_user_ca_keys),
            revocation_max_age=reply.revocation_max_age.ToTimedelta(), host_cert_ttl=reply.host_cert_ttl.ToTimedelta(),
            host_cert=reply.host_cert,
            host_cert_expires=reply.host_cert_expires.ToDatetime(tzinfo=UTC) if reply.HasField("host_cert_expires")
            else None,
            revocations_version=reply.revocations_version, revoked_keys=reply.revoked_keys,
        )
