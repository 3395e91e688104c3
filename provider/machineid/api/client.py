"""Clients of the cluster API. The CLI, the agent and the providers use these; none imports the server.

`Client` speaks for an identity over mutual TLS; `JoinClient` is the unauthenticated side (ping, join), and
`fetch_cluster_cas` is the first contact that checks a CA pin before anything is trusted or sent.
"""

from __future__ import annotations

import builtins
import socket
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import grpc
from google.protobuf import duration_pb2

from machineid.api import certs, convert, status
from machineid.api.identity import Identity
from machineid.api.nodes import NodeSync
from machineid.api.v1 import cluster_pb2 as pb
from machineid.api.v1 import cluster_pb2_grpc as rpc
from machineid.api.v1 import types_pb2 as tpb
from machineid.model import errors, kinds
from machineid.model.instances import BotInstance, Heartbeat
from machineid.model.resources import KINDS, Bot, Lock, Node, ProvisionToken, Resource, Role, User

T = TypeVar("T")
DEFAULT_TIMEOUT = 30.0
R = TypeVar("R", Role, ProvisionToken, Bot, User, Node, Lock)


@dataclass(frozen=True)
class _KindRPC:
    """A kind's RPCs and messages, by the names proto/ gives them (from the kind's declaration)."""

    pb_type: Any
    upsert: str
    upsert_request: Any
    request_field: str
    get: str
    list: str
    list_field: str
    delete: str

    @classmethod
    def of(cls, kind: kinds.KindDef) -> _KindRPC:
        return cls(getattr(tpb, kind.message), f"Upsert{kind.rpc}", getattr(pb, f"Upsert{kind.rpc}Request", None),
                   kind.name, f"Get{kind.rpc}", f"List{kind.rpc}s", kind.plural, f"Delete{kind.rpc}")


_RPC: dict[str, _KindRPC] = {k.name: _KindRPC.of(k) for k in kinds.REGISTRY}


def duration_pb(value: timedelta | None) -> duration_pb2.Duration | None:
    if value is None:
        return None
    d = duration_pb2.Duration()
    d.FromTimedelta(value)
    return d


def split_address(address: str) -> tuple[str, int]:
    if "://" in address:
        raise errors.ValidationError(f'auth server address "{address}" has a scheme; drop it and write host:port, '
                                     "e.g. 127.0.0.1:3025")
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise errors.ValidationError(f'auth server address "{address}" is not host:port; e.g. 127.0.0.1:3025')
    return host.strip("[]"), int(port)


@contextmanager
def _mapped(address: str) -> Iterator[None]:
    try:
        yield
    except grpc.RpcError as err:
        raise status.from_rpc_error(err, address) from None


@dataclass
class BotCreated:
    bot: Bot
    token: str
    join_method: str
    token_expires: Any
    ca_pins: list[str]


@dataclass
class AgentCycle:
    """Client.agent_cycle's answer: the renewed identity's certificates, the output certificates (when asked),
    the first page of nodes and where the next starts (empty: none), or why the listing failed."""

    certs: tpb.Certs
    output_certs: tpb.Certs | None
    nodes: builtins.list[Node]
    next_page_token: str
    nodes_error: str


class _Base:
    def __init__(self, address: str, channel: grpc.Channel, timeout: float) -> None:
        self.address = address
        self.channel = channel
        self.timeout = timeout
        self.join = rpc.JoinServiceStub(channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: Callable[..., T], request: Any) -> T:
        with _mapped(self.address):
            return method(request, timeout=self.timeout)

    def ping(self) -> pb.PingResponse:
        return self._call(self.join.Ping, pb.PingRequest())


def _channel_options(server_name: str) -> list[tuple[str, Any]]:
    return [("grpc.ssl_target_name_override", server_name), ("grpc.default_authority", server_name)]


class JoinClient(_Base):
    """Unauthenticated: trusts only the given CA certificates (checked against a pin first)."""

    def __init__(self, address: str, ca_certs: list[str], timeout: float = DEFAULT_TIMEOUT) -> None:
        split_address(address)
        creds = grpc.ssl_channel_credentials(root_certificates="".join(ca_certs).encode())
        super().__init__(address, grpc.secure_channel(address, creds, _channel_options(certs.JOIN_SERVER_NAME)),
                         timeout)

    def create_iam_challenge(self) -> str:
        return self._call(self.join.CreateIAMChallenge, pb.IAMChallengeRequest()).challenge

    def register_using_iam(self, token: str, challenge: str, method: str, url: str, headers: dict[str, str],
                           body: bytes, public_key_pem: str, ttl: timedelta | None = None) -> pb.JoinResponse:
        req = pb.IAMJoinRequest(token=token, challenge=challenge, public_key=public_key_pem, ttl=duration_pb(ttl),
                                sts_request=pb.SignedHTTPRequest(method=method, url=url, headers=headers, body=body))
        return self._call(self.join.RegisterUsingIAM, req)

    def join_with_iam(self, token: str, public_key_pem: str, ttl: timedelta | None = None) -> pb.JoinResponse:
        """The IAM method end to end: a challenge, signed into an STS GetCallerIdentity request with this machine's
        AWS credentials, then the join."""
        from machineid.api.iam_signing import sign_get_caller_identity  # botocore: only machines that use IAM

        challenge = self.create_iam_challenge()
        signed = sign_get_caller_identity(challenge)
        return self.register_using_iam(token, challenge, signed.method, signed.url, signed.headers, signed.body,
                                       public_key_pem, ttl)

    def create_bound_keypair_challenge(self, token: str) -> pb.BoundKeypairChallengeResponse:
        return self._call(self.join.CreateBoundKeypairChallenge, pb.BoundKeypairChallengeRequest(token=token))

    def register_using_bound_keypair(self, request: pb.BoundKeypairJoinRequest) -> pb.BoundKeypairJoinResponse:
        return self._call(self.join.RegisterUsingBoundKeypair, request)

    def register_using_oidc(self, token: str, id_token: str, public_key_pem: str,
                            ttl: timedelta | None = None) -> pb.JoinResponse:
        """A delegated join (github, gitlab, kubernetes, oidc tokens) with the platform's ID token."""
        req = pb.OIDCJoinRequest(token=token, id_token=id_token, public_key=public_key_pem, ttl=duration_pb(ttl))
        return self._call(self.join.RegisterUsingOIDC, req)

    def register_using_token(self, token: str, public_key_pem: str, ttl: timedelta | None = None) -> pb.JoinResponse:
        req = pb.JoinRequest(token=token, join_method="token", public_key=public_key_pem, ttl=duration_pb(ttl))
        return self._call(self.join.RegisterUsingToken, req)


def fetch_cluster_cas(address: str, timeout: float = 10.0) -> list[str]:
    """First contact: the CA certificates the server presents, not yet trusted. Check them against a pin."""
    host, port = split_address(address)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # nothing is trusted yet: the caller checks the pin before sending anything
    ctx.set_alpn_protocols(["h2"])
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, \
                ctx.wrap_socket(raw, server_hostname=certs.JOIN_SERVER_NAME) as tls:
            chain = tls._sslobj.get_unverified_chain()  # type: ignore[attr-defined]  # public in Python 3.13
    except OSError as e:
        raise errors.TransportError(f"cannot reach the cluster at {address}: {e}") from e
    pems = [c.public_bytes(ssl._ssl.ENCODING_PEM) for c in chain or []]  # type: ignore[attr-defined]
    cas = [p for p in pems[1:]]
    if not cas:
        raise errors.TransportError(f"the server at {address} presented no CA certificate")
    return cas


def check_pin(ca_certs: list[str], pin: str) -> str:
    """Return the CA certificate matching pin, or raise with both pins named."""
    pin = pin.strip().lower()
    if not pin.startswith("sha256:"):
        raise errors.ValidationError(f'CA pin "{pin}" must start with "sha256:" (as printed by `machineid ctl'
                                     " bots add`)")
    for ca in ca_certs:
        if certs.ca_pin(ca) == pin:
            return ca
    got = ", ".join(certs.ca_pin(c) for c in ca_certs)
    raise errors.PermissionDeniedError(f"the cluster's CA does not match the pin: expected {pin}, the server "
                                       f"presented {got}; nothing was sent")


class Client(_Base):
    """Speaks for an identity over mutual TLS."""

    def __init__(self, address: str, identity: Identity, timeout: float = DEFAULT_TIMEOUT) -> None:
        split_address(address)
        self.identity = identity
        creds = grpc.ssl_channel_credentials(
            root_certificates="".join(identity.tls_ca_certs).encode(),
            private_key=identity.key_pem.encode(),
            certificate_chain=identity.tls_cert.encode(),
        )
        super().__init__(address, grpc.secure_channel(address, creds, _channel_options(certs.SERVER_NAME)), timeout)
        self.cluster = rpc.ClusterServiceStub(self.channel)
        self.nodes = rpc.NodeServiceStub(self.channel)

    # ---- generic resource access ----
    def upsert(self, obj: Resource, *, create_only: bool = False) -> Resource:
        """Create or update; conditional on obj.metadata.revision when it is set."""
        kind = obj.kind
        if not kinds.BY_NAME[kind].generic_upsert:  # a bot: created and updated with its user and role
            if create_only:
                return self.create_bot(obj).bot  # type: ignore[arg-type]
            return self.update_bot(obj)  # type: ignore[arg-type]
        spec = _RPC[kind]
        req = spec.upsert_request(**{spec.request_field: convert.to_pb(obj, spec.pb_type)}, create_only=create_only)
        reply = self._call(getattr(self.cluster, spec.upsert), req)
        return convert.from_pb(KINDS[kind], reply)

    def get(self, kind: str, name: str) -> Resource:
        spec = _RPC[kind]
        reply = self._call(getattr(self.cluster, spec.get), pb.GetRequest(name=name))
        return convert.from_pb(KINDS[kind], reply)

    def list(self, kind: str, labels: dict[str, str] | None = None, page_size: int = 0,
             page_token: str = "") -> builtins.list[Resource]:
        """Every object of the kind (with these labels), following the server's pages (from page_token: where an
        earlier answer's page ended)."""
        spec = _RPC[kind]
        out: builtins.list[Resource] = []
        token = page_token
        while True:
            req = pb.ListRequest(page_size=page_size, page_token=token, labels=labels or {})
            reply = self._call(getattr(self.cluster, spec.list), req)
            out += [convert.from_pb(KINDS[kind], m) for m in getattr(reply, spec.list_field)]
            if not reply.next_page_token:
                return out
            if reply.next_page_token <= token:
                raise errors.TransportError(f"the server's pages of {kind} do not advance ({reply.next_page_token!r}); "
                                     "is it a machineid server?")
            token = reply.next_page_token

    def delete(self, kind: str, name: str, revision: str = "") -> None:
        self._call(getattr(self.cluster, _RPC[kind].delete), pb.DeleteRequest(name=name, revision=revision))

    # ---- typed helpers ----
    def get_as(self, cls: type[R], name: str) -> R:
        obj = self.get(cls.kind, name)
        assert isinstance(obj, cls)
        return obj

    def list_as(self, cls: type[R], labels: dict[str, str] | None = None, page_token: str = "") -> builtins.list[R]:
        return [obj for obj in self.list(cls.kind, labels, page_token=page_token) if isinstance(obj, cls)]

    def get_role(self, name: str) -> Role:
        return self.get_as(Role, name)

    # ---- bot instances ----
    def list_bot_instances(self, bot_name: str = "", page_size: int = 0) -> builtins.list[BotInstance]:
        """One bot's instances, or every bot's (all pages)."""
        out: builtins.list[BotInstance] = []
        token = ""
        while True:
            reply = self._call(self.cluster.ListBotInstances, pb.ListBotInstancesRequest(
                bot_name=bot_name, page_size=page_size, page_token=token))
            out += [convert.from_pb(BotInstance, m) for m in reply.instances]
            if not reply.next_page_token:
                return out
            if reply.next_page_token <= token:
                raise errors.TransportError("the server's pages of bot instances do not advance; is it a machineid "
                                            "server?")
            token = reply.next_page_token

    def get_bot_instance(self, instance_id: str) -> BotInstance:
        reply = self._call(self.cluster.GetBotInstance, pb.GetBotInstanceRequest(instance_id=instance_id))
        return convert.from_pb(BotInstance, reply)

    def get_token(self, name: str) -> ProvisionToken:
        return self.get_as(ProvisionToken, name)

    def get_bot(self, name: str) -> Bot:
        return self.get_as(Bot, name)

    def get_user(self, name: str) -> User:
        return self.get_as(User, name)

    def get_node(self, name: str) -> Node:
        return self.get_as(Node, name)

    def create_bot(self, bot: Bot, token_name: str = "", token_ttl: timedelta | None = None) -> BotCreated:
        req = pb.CreateBotRequest(bot=convert.to_pb(bot, tpb.Bot), token_name=token_name,
                                  token_ttl=duration_pb(token_ttl))
        reply = self._call(self.cluster.CreateBot, req)
        return BotCreated(
            bot=convert.from_pb(Bot, reply.bot),
            token=reply.token,
            join_method=reply.join_method,
            token_expires=reply.token_expires.ToDatetime(tzinfo=UTC) if reply.HasField("token_expires")
            else None,
            ca_pins=list(reply.ca_pins),
        )

    def update_bot(self, bot: Bot) -> Bot:
        reply = self._call(self.cluster.UpdateBot, pb.UpdateBotRequest(bot=convert.to_pb(bot, tpb.Bot)))
        return convert.from_pb(Bot, reply)

    def unlock_bot(self, name: str) -> Bot:
        return convert.from_pb(Bot, self._call(self.cluster.UnlockBot, pb.UnlockBotRequest(name=name)))

    def unlock_node(self, name: str) -> Node:
        return convert.from_pb(Node, self._call(self.cluster.UnlockNode, pb.UnlockNodeRequest(name=name)))

    def sync_node(self, version: str, heartbeat_interval: timedelta, host_public_key: str = "",
                  applied_revision: str = "", revocations_version: int = 0) -> NodeSync:
        """A node's heartbeat (its own identity only): what it enforces, the key revocation list when it is not
        `revocations_version`, and a host certificate when it sends its host key."""
        req = pb.NodeSyncRequest(version=version, heartbeat_interval=duration_pb(heartbeat_interval),
                                 host_public_key=host_public_key, applied_revision=applied_revision,
                                 revocations_version=revocations_version)
        return NodeSync.from_pb(self._call(self.nodes.Sync, req))

    def renew(self, public_key_pem: str, ttl: timedelta | None = None, heartbeat: Heartbeat | None = None
              ) -> tpb.Certs:
        req = pb.RenewRequest(public_key=public_key_pem, ttl=duration_pb(ttl))
        if heartbeat is not None:
            req.heartbeat.CopyFrom(convert.to_pb(heartbeat, tpb.BotInstanceHeartbeat))
        return self._call(self.cluster.RenewCerts, req)

    def issue_output_certs(self, public_key_pem: str, ttl: timedelta | None = None) -> tpb.Certs:
        return self._call(self.cluster.IssueOutputCerts, pb.RenewRequest(public_key=public_key_pem,
                                                                          ttl=duration_pb(ttl)))

    def agent_cycle(self, public_key_pem: str, ttl: timedelta | None = None, output_public_key_pem: str = "",
                    output_ttl: timedelta | None = None, list_nodes: bool = False,
                    node_page_size: int = 0, heartbeat: Heartbeat | None = None) -> AgentCycle | None:
        """A bot agent's cycle in one call on this channel: renew this (renewable) identity, and the output
        certificates for output_public_key_pem and the first page of nodes, both as the renewed identity. None when
        the server predates the call (then renew, issue_output_certs and list, each as its identity)."""
        req = pb.AgentCycleRequest(public_key=public_key_pem, ttl=duration_pb(ttl),
                                   output_public_key=output_public_key_pem, output_ttl=duration_pb(output_ttl),
                                   list_nodes=list_nodes, node_page_size=node_page_size)
        if heartbeat is not None:
            req.heartbeat.CopyFrom(convert.to_pb(heartbeat, tpb.BotInstanceHeartbeat))
        try:
            reply = self.cluster.AgentCycle(req, timeout=self.timeout)
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.UNIMPLEMENTED:
                return None
            raise status.from_rpc_error(err, self.address) from None
        return AgentCycle(certs=reply.certs, output_certs=reply.output_certs if reply.HasField("output_certs")
                          else None, nodes=[convert.from_pb(Node, n) for n in reply.nodes],
                          next_page_token=reply.next_page_token, nodes_error=reply.nodes_error)

    def sign_user(self, user: str, public_key_pem: str, ttl: timedelta | None = None) -> tpb.Certs:
        req = pb.SignUserRequest(user=user, public_key=public_key_pem, ttl=duration_pb(ttl))
        return self._call(self.cluster.SignUserCerts, req)

    def sign_host(self, public_key: str, principals: builtins.list[str], ttl: timedelta | None = None) -> str:
        req = pb.SignHostRequest(public_key=public_key, principals=principals, ttl=duration_pb(ttl))
        return self._call(self.cluster.SignHostCert, req).ssh_cert

    def export_cas(self, ca_type: str = "") -> builtins.list[tpb.CertAuthority]:
        return list(self._call(self.cluster.ExportCAs, pb.ExportCAsRequest(type=ca_type)).cas)

    def audit_events(self, after_id: int = 0, limit: int = 1000, since: datetime | None = None, action: str = "",
                     actor: str = "") -> builtins.list[tpb.AuditEvent]:
        """One page of events after after_id (pass the last id for the next page)."""
        req = pb.ListAuditEventsRequest(after_id=after_id, limit=limit, action=action, actor=actor)
        if since is not None:
            req.since.FromDatetime(since)
        return list(self._call(self.cluster.ListAuditEvents, req).events)


def identity_from_certs(key_pem: str, reply: tpb.Certs) -> Identity:
    return Identity(key_pem=key_pem, tls_cert=reply.tls_cert, tls_ca_certs=list(reply.tls_ca_certs),
                    ssh_cert=reply.ssh_cert, ssh_host_ca_keys=list(reply.ssh_host_ca_keys))
