"""gRPC servicers: thin adapters that convert wire <-> model, find the caller, and map errors to statuses.

All logic lives in machineid.cluster.service; nothing here decides anything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, timedelta
from typing import Any

import grpc
from cryptography import x509
from google.protobuf import duration_pb2, timestamp_pb2

from machineid import __version__
from machineid.api import certs, convert, status
from machineid.api.iam import SignedRequest
from machineid.api.v1 import cluster_pb2 as pb
from machineid.api.v1 import cluster_pb2_grpc as rpc
from machineid.api.v1 import types_pb2 as tpb
from machineid.cluster.issuance import IssuedCerts
from machineid.cluster.keypairs import KeypairJoin
from machineid.cluster.limits import CallLimits
from machineid.cluster.node_sync import SyncRequest
from machineid.cluster.router import client_address
from machineid.cluster.service import ANONYMOUS, Caller, Cluster, CycleRequest, Page
from machineid.cluster.store.base import AuditFilter
from machineid.model import codec, kinds
from machineid.model.errors import FieldViolation, UnauthenticatedError, ValidationError
from machineid.model.instances import Heartbeat
from machineid.model.resources import KINDS, Bot
from machineid.model.validators import MAX_DURATION_SECONDS

log = logging.getLogger("machineid.cluster.grpc")


_SECRET_CALLS = frozenset({"UpsertToken", "GetToken", "DeleteToken", "RegisterUsingToken", "RegisterUsingIAM",
                           "CreateBot", "CreateBoundKeypairChallenge", "RegisterUsingBoundKeypair",
                           "RegisterUsingOIDC"})


def _on_bug(name: str, err: Exception) -> str:
    return f"internal error in {name}; see the server log"


def _serial(servicer: Any) -> AbstractContextManager[object]:
    cluster: Cluster = servicer.cluster
    return cluster.serial()


_handler = status.handler(log, _on_bug, _SECRET_CALLS, guard=_serial)
# For calls that wait on the network (the STS call of an IAM join): other requests go on meanwhile.
_waiting_handler = status.handler(log, _on_bug, _SECRET_CALLS)


def _ttl(msg: Any, field: str = "ttl") -> timedelta | None:
    if not msg.HasField(field):
        return None
    try:
        value: timedelta = getattr(msg, field).ToTimedelta()
    except (OverflowError, ValueError):
        value = timedelta.max
    # Any longer and adding it to the time now overflows (and nothing lives a century).
    if abs(value.total_seconds()) > MAX_DURATION_SECONDS:
        raise ValidationError([FieldViolation((field,), "is out of range; send a duration of at most 100 years, "
                                                        "such as 1h")])
    return value


def _page(request: pb.ListRequest) -> Page:
    return Page(size=request.page_size, token=request.page_token, labels=dict(request.labels))


def _ts(value: Any) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def _heartbeat(request: pb.RenewRequest | pb.AgentCycleRequest) -> Heartbeat | None:
    """The agent's heartbeat, bounded (its strings, its destinations) before a bot writes it into its record."""
    if not request.HasField("heartbeat"):
        return None
    heartbeat = convert.from_pb(Heartbeat, request.heartbeat)
    codec.validate(heartbeat)
    return heartbeat


def certs_pb(out: IssuedCerts) -> tpb.Certs:
    return tpb.Certs(
        ssh_cert=out.ssh_cert, tls_cert=out.tls_cert, tls_ca_certs=out.tls_ca_certs,
        ssh_host_ca_keys=out.ssh_host_ca_keys, ssh_user_ca_keys=out.ssh_user_ca_keys,
        expires=_ts(out.expires), renewable=out.renewable, generation=out.generation,
    )


def join_response(name: str, out: IssuedCerts) -> pb.JoinResponse:
    """A join's answer names what it joined: the node (node_name) or the bot (bot_name)."""
    if out.node_name:
        return pb.JoinResponse(node_name=name, certs=certs_pb(out))
    return pb.JoinResponse(bot_name=name, certs=certs_pb(out))


def _duration(value: timedelta) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromTimedelta(value)
    return d


def _decode_pb(cls: type[Any], message: Any, field: str) -> Any:
    try:
        return convert.from_pb(cls, message)
    except ValidationError as e:
        raise ValidationError(e.violations, (field,)) from None


class _Base:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def caller(self, context: grpc.ServicerContext) -> Caller:
        pem: list[bytes] | None = context.auth_context().get("x509_pem_cert")  # type: ignore[assignment]
        if not pem:
            return ANONYMOUS
        try:
            ident = certs.CertIdentity.from_cert(x509.load_pem_x509_certificate(pem[0]))
        except (ValueError, x509.ExtensionNotFound, TypeError) as e:
            raise UnauthenticatedError(f"the client certificate carries no machineid identity: {e}") from None
        if ident.cluster != self.cluster.cluster_name:
            raise UnauthenticatedError(f'the client certificate is for cluster "{ident.cluster}", this is '
                                       f'"{self.cluster.cluster_name}"')
        return self.cluster.caller_from_cert(ident)


class JoinServicer(_Base, rpc.JoinServiceServicer):
    """Anonymous calls: limited per client address (`peer_tag`: the router's, whose connections' names carry the
    client's address), since one connection can carry any number of them."""

    def __init__(self, cluster: Cluster, limits: CallLimits | None = None, peer_tag: str = "") -> None:
        super().__init__(cluster)
        self.limits = limits
        self.peer_tag = peer_tag

    def source(self, context: grpc.ServicerContext) -> str:
        return client_address(context.peer(), self.peer_tag)

    def limit(self, context: grpc.ServicerContext) -> None:
        if self.limits is not None:
            self.limits.check(self.source(context), "join and ping calls")

    @_handler
    def Ping(self, request: pb.PingRequest, context: grpc.ServicerContext) -> pb.PingResponse:
        self.limit(context)
        a = self.cluster.authority
        return pb.PingResponse(cluster_name=self.cluster.cluster_name, server_version=__version__,
                               ca_pins=[a.pin], tls_ca_certs=[a.tls_ca_pem])

    @_handler
    def RegisterUsingToken(self, request: pb.JoinRequest, context: grpc.ServicerContext) -> pb.JoinResponse:
        self.limit(context)
        if request.join_method not in ("", "token"):
            raise ValidationError(f'join_method: "{request.join_method}" is not served by RegisterUsingToken; '
                                  "IAM joins use RegisterUsingIAM")
        name, data = self.cluster.register_using_token(request.token, request.public_key, _ttl(request))
        return join_response(name, data)

    @_handler
    def CreateIAMChallenge(self, request: pb.IAMChallengeRequest,
                           context: grpc.ServicerContext) -> pb.IAMChallengeResponse:
        self.limit(context)
        return pb.IAMChallengeResponse(challenge=self.cluster.create_iam_challenge())

    @_waiting_handler
    def RegisterUsingIAM(self, request: pb.IAMJoinRequest, context: grpc.ServicerContext) -> pb.JoinResponse:
        self.limit(context)
        sts = request.sts_request
        signed = SignedRequest(method=sts.method, url=sts.url, headers=dict(sts.headers), body=bytes(sts.body))
        name, data = self.cluster.register_using_iam(request.token, request.challenge, signed, request.public_key,
                                                     _ttl(request))
        return join_response(name, data)

    @_waiting_handler
    def RegisterUsingOIDC(self, request: pb.OIDCJoinRequest, context: grpc.ServicerContext) -> pb.JoinResponse:
        self.limit(context)
        bot, data = self.cluster.register_using_oidc(request.token, request.id_token, request.public_key,
                                                     _ttl(request), self.source(context))
        return pb.JoinResponse(bot_name=bot, certs=certs_pb(data))

    @_handler
    def CreateBoundKeypairChallenge(self, request: pb.BoundKeypairChallengeRequest,
                                    context: grpc.ServicerContext) -> pb.BoundKeypairChallengeResponse:
        self.limit(context)
        challenge, rotate = self.cluster.create_bound_keypair_challenge(request.token)
        return pb.BoundKeypairChallengeResponse(challenge=challenge, rotate=rotate)

    @_handler
    def RegisterUsingBoundKeypair(self, request: pb.BoundKeypairJoinRequest,
                                  context: grpc.ServicerContext) -> pb.BoundKeypairJoinResponse:
        self.limit(context)
        joined = self.cluster.register_using_bound_keypair(KeypairJoin(
            token=request.token, challenge=request.challenge, public_key=request.public_key, ttl=_ttl(request),
            signature=bytes(request.signature), join_state=request.join_state,
            new_public_key=request.new_public_key, new_key_signature=bytes(request.new_key_signature),
            registration_secret=request.registration_secret))
        return pb.BoundKeypairJoinResponse(bot_name=joined.bot_name, node_name=joined.node_name,
                                           certs=certs_pb(joined.certs), join_state=joined.join_state,
                                           bound_public_key=joined.bound_public_key)


class ClusterServicer(_Base, rpc.ClusterServiceServicer):
    """The authenticated API. Every kind's Upsert, Get, List and Delete RPCs are made from its declaration in
    model/kinds.py (see _kind_methods below); a bot's creation, update and unlock have RPCs of their own."""

    # ---- bots
    @_handler
    def CreateBot(self, request: pb.CreateBotRequest, context: grpc.ServicerContext) -> pb.BotResponse:
        bot = _decode_pb(Bot, request.bot, "bot")
        created, token = self.cluster.create_bot(self.caller(context), bot, request.token_name,
                                                 _ttl(request, "token_ttl"))
        resp = pb.BotResponse(bot=convert.to_pb(created, tpb.Bot), token=token.metadata.name,
                              join_method=token.spec.join_method, ca_pins=[self.cluster.authority.pin])
        if token.metadata.expires:
            resp.token_expires.CopyFrom(_ts(token.metadata.expires))
        return resp

    @_handler
    def UpdateBot(self, request: pb.UpdateBotRequest, context: grpc.ServicerContext) -> tpb.Bot:
        bot = _decode_pb(Bot, request.bot, "bot")
        return convert.to_pb(self.cluster.update_bot(self.caller(context), bot), tpb.Bot)

    @_handler
    def UnlockBot(self, request: pb.UnlockBotRequest, context: grpc.ServicerContext) -> tpb.Bot:
        return convert.to_pb(self.cluster.unlock_bot(self.caller(context), request.name), tpb.Bot)

    # ---- nodes
    @_handler
    def UnlockNode(self, request: pb.UnlockNodeRequest, context: grpc.ServicerContext) -> tpb.Node:
        return convert.to_pb(self.cluster.unlock_node(self.caller(context), request.name), tpb.Node)

    # ---- certificates
    @_handler
    def RenewCerts(self, request: pb.RenewRequest, context: grpc.ServicerContext) -> tpb.Certs:
        return certs_pb(self.cluster.renew(self.caller(context), request.public_key, _ttl(request),
                                           _heartbeat(request)))

    # ---- bot instances
    @_handler
    def ListBotInstances(self, request: pb.ListBotInstancesRequest,
                         context: grpc.ServicerContext) -> pb.ListBotInstancesResponse:
        found, after = self.cluster.list_bot_instances(
            self.caller(context), request.bot_name, Page(size=request.page_size, token=request.page_token))
        return pb.ListBotInstancesResponse(instances=[convert.to_pb(i, tpb.BotInstance) for i in found],
                                           next_page_token=after)

    @_handler
    def GetBotInstance(self, request: pb.GetBotInstanceRequest,
                       context: grpc.ServicerContext) -> tpb.BotInstance:
        return convert.to_pb(self.cluster.get_bot_instance(self.caller(context), request.instance_id),
                             tpb.BotInstance)

    @_handler
    def IssueOutputCerts(self, request: pb.RenewRequest, context: grpc.ServicerContext) -> tpb.Certs:
        return certs_pb(self.cluster.issue_output_certs(self.caller(context), request.public_key, _ttl(request)))

    @_handler
    def AgentCycle(self, request: pb.AgentCycleRequest, context: grpc.ServicerContext) -> pb.AgentCycleResponse:
        answer = self.cluster.agent_cycle(self.caller(context), CycleRequest(
            public_key=request.public_key, ttl=_ttl(request), output_public_key=request.output_public_key,
            output_ttl=_ttl(request, "output_ttl"), list_nodes=request.list_nodes,
            node_page_size=request.node_page_size, heartbeat=_heartbeat(request)))
        resp = pb.AgentCycleResponse(certs=certs_pb(answer.certs), nodes=[convert.to_pb(n, tpb.Node)
                                                                           for n in answer.nodes],
                                     next_page_token=answer.next_page_token, nodes_error=answer.nodes_error)
        if answer.output is not None:
            resp.output_certs.CopyFrom(certs_pb(answer.output))
        return resp

    @_handler
    def SignUserCerts(self, request: pb.SignUserRequest, context: grpc.ServicerContext) -> tpb.Certs:
        return certs_pb(self.cluster.sign_user(self.caller(context), request.user, request.public_key,
                                               _ttl(request)))

    @_handler
    def SignHostCert(self, request: pb.SignHostRequest, context: grpc.ServicerContext) -> pb.SignHostResponse:
        cert = self.cluster.sign_host(self.caller(context), request.public_key, list(request.principals),
                                      _ttl(request))
        return pb.SignHostResponse(ssh_cert=cert)

    @_handler
    def ExportCAs(self, request: pb.ExportCAsRequest, context: grpc.ServicerContext) -> pb.ExportCAsResponse:
        cas = self.cluster.export_cas(self.caller(context), request.type)
        return pb.ExportCAsResponse(cas=[tpb.CertAuthority(**c) for c in cas])

    @_waiting_handler
    def ListAuditEvents(self, request: pb.ListAuditEventsRequest,
                        context: grpc.ServicerContext) -> pb.ListAuditEventsResponse:
        since = request.since.ToDatetime(tzinfo=UTC) if request.HasField("since") else None
        where = AuditFilter(since=since, action=request.action, actor=request.actor)
        events = self.cluster.audit_events(self.caller(context), request.after_id, request.limit, where)
        return pb.ListAuditEventsResponse(events=[
            tpb.AuditEvent(id=e.id, time=_ts(e.time), actor=e.actor, action=e.action, target=e.target,
                           outcome=e.outcome, details=codec_json(e.details))
            for e in events
        ])


class NodeServicer(_Base, rpc.NodeServiceServicer):
    """The node RPCs (only a node's own identity may call them). `peer_tag`: the router's (see JoinServicer); the
    node's status records the client's address as the address it reports from."""

    def __init__(self, cluster: Cluster, peer_tag: str = "") -> None:
        super().__init__(cluster)
        self.peer_tag = peer_tag

    @_handler
    def Sync(self, request: pb.NodeSyncRequest, context: grpc.ServicerContext) -> pb.NodeSyncResponse:
        caller = self.caller(context)
        answer = self.cluster.sync_node(caller, SyncRequest(
            version=request.version, heartbeat_interval=_ttl(request, "heartbeat_interval"),
            host_public_key=request.host_public_key, applied_revision=request.applied_revision,
            peer=client_address(context.peer(), self.peer_tag), revocations_version=request.revocations_version))
        resp = pb.NodeSyncResponse(
            node_name=answer.node_name, cluster_name=answer.cluster_name, labels=answer.labels,
            revision=answer.revision, host_cert_principals=answer.host_cert_principals, host_cert=answer.host_cert,
            ssh_user_ca_keys=answer.ssh_user_ca_keys, revocation_max_age=_duration(answer.revocation_max_age),
            host_cert_ttl=_duration(answer.host_cert_ttl), revocations_version=answer.revocations_version,
            revoked_keys=answer.revoked_keys)
        if answer.host_cert_expires is not None:
            resp.host_cert_expires.CopyFrom(_ts(answer.host_cert_expires))
        return resp


def codec_json(details: dict[str, Any]) -> str:
    import json

    return json.dumps(codec.encode(details), sort_keys=True)


def _kind_methods(kind: kinds.KindDef) -> dict[str, Callable[..., Any]]:
    """A kind's Upsert<rpc>, Get<rpc>, List<rpc>s and Delete<rpc>, named as proto/ names them: thin conversions
    around the cluster's generic calls, which apply the kind's own rules."""
    cls: Any = KINDS[kind.name]
    pb_type = getattr(tpb, kind.message)
    list_response = getattr(pb, f"List{kind.rpc}sResponse")

    def upsert(self: ClusterServicer, request: Any, context: grpc.ServicerContext) -> Any:
        obj = _decode_pb(cls, getattr(request, kind.name), kind.name)
        return convert.to_pb(self.cluster.upsert(self.caller(context), obj, request.create_only), pb_type)

    def get(self: ClusterServicer, request: pb.GetRequest, context: grpc.ServicerContext) -> Any:
        return convert.to_pb(self.cluster.get(self.caller(context), cls, request.name), pb_type)

    def list_(self: ClusterServicer, request: pb.ListRequest, context: grpc.ServicerContext) -> Any:
        items, next_token = self.cluster.list_page(self.caller(context), cls, _page(request))
        return list_response(**{kind.plural: [convert.to_pb(x, pb_type) for x in items]}, next_page_token=next_token)

    def delete(self: ClusterServicer, request: pb.DeleteRequest, context: grpc.ServicerContext) -> pb.DeleteResponse:
        self.cluster.delete(self.caller(context), cls, request.name, request.revision)
        return pb.DeleteResponse()

    methods: dict[str, tuple[Callable[..., Any], Callable[[Any], Any]]] = {
        f"Get{kind.rpc}": (get, _handler),
        f"List{kind.rpc}s": (list_, _waiting_handler),  # the serial lock is held only while reading the page
        f"Delete{kind.rpc}": (delete, _handler),
    }
    if kind.generic_upsert:
        methods[f"Upsert{kind.rpc}"] = (upsert, _handler)
    out: dict[str, Callable[..., Any]] = {}
    for name, (fn, wrap) in methods.items():
        fn.__name__ = fn.__qualname__ = name  # the handler logs by name, and keeps token calls out of the log
        out[name] = wrap(fn)
    return out


for _kind in kinds.REGISTRY:
    for _name, _method in _kind_methods(_kind).items():
        setattr(ClusterServicer, _name, _method)
