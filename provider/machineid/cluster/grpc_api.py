"""gRPC servicers: thin adapters that convert wire <-> model, find the caller, and map errors to statuses.

All logic lives in machineid.cluster.service; nothing here decides anything.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from datetime import UTC, timedelta
from typing import Any

import grpc
from cryptography import x509
from google.protobuf import timestamp_pb2

from machineid import __version__
from machineid.api import certs, convert, status
from machineid.api.iam import SignedRequest
from machineid.api.v1 import cluster_pb2 as pb
from machineid.api.v1 import cluster_pb2_grpc as rpc
from machineid.api.v1 import types_pb2 as tpb
from machineid.cluster.issuance import IssuedCerts
from machineid.cluster.keypairs import KeypairJoin
from machineid.cluster.limits import CallLimits
from machineid.cluster.service import ANONYMOUS, Caller, Cluster, Page
from machineid.cluster.store.base import AuditFilter
from machineid.model import codec
from machineid.model.errors import FieldViolation, UnauthenticatedError, ValidationError
from machineid.model.resources import Bot, Node, ProvisionToken, Role, User
from machineid.model.validators import MAX_DURATION_SECONDS

log = logging.getLogger("machineid.cluster.grpc")


_SECRET_CALLS = frozenset({"UpsertToken", "GetToken", "DeleteToken", "RegisterUsingToken", "RegisterUsingIAM",
                           "CreateBot", "CreateBoundKeypairChallenge", "RegisterUsingBoundKeypair"})


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


def certs_pb(out: IssuedCerts) -> tpb.Certs:
    return tpb.Certs(
        ssh_cert=out.ssh_cert, tls_cert=out.tls_cert, tls_ca_certs=out.tls_ca_certs,
        ssh_host_ca_keys=out.ssh_host_ca_keys, ssh_user_ca_keys=out.ssh_user_ca_keys,
        expires=_ts(out.expires), renewable=out.renewable, generation=out.generation,
    )


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
    """Anonymous calls: limited per client address (`sources`: the router's map from gRPC's peer name to the
    client's address), since one connection can carry any number of them."""

    def __init__(self, cluster: Cluster, limits: CallLimits | None = None,
                 sources: dict[str, str] | None = None) -> None:
        super().__init__(cluster)
        self.limits = limits
        self.sources = sources if sources is not None else {}

    def limit(self, context: grpc.ServicerContext) -> None:
        if self.limits is not None:
            peer = context.peer()
            self.limits.check(self.sources.get(peer, peer), "join and ping calls")

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
        bot, data = self.cluster.register_using_token(request.token, request.public_key, _ttl(request))
        return pb.JoinResponse(bot_name=bot, certs=certs_pb(data))

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
        bot, data = self.cluster.register_using_iam(request.token, request.challenge, signed, request.public_key,
                                                    _ttl(request))
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
        return pb.BoundKeypairJoinResponse(bot_name=joined.bot_name, certs=certs_pb(joined.certs),
                                           join_state=joined.join_state, bound_public_key=joined.bound_public_key)


class ClusterServicer(_Base, rpc.ClusterServiceServicer):
    # ---- roles
    @_handler
    def UpsertRole(self, request: pb.UpsertRoleRequest, context: grpc.ServicerContext) -> tpb.Role:
        role = _decode_pb(Role, request.role, "role")
        out = self.cluster.upsert_role(self.caller(context), role, request.create_only)
        return convert.to_pb(out, tpb.Role)

    @_handler
    def GetRole(self, request: pb.GetRequest, context: grpc.ServicerContext) -> tpb.Role:
        return convert.to_pb(self.cluster.get_role(self.caller(context), request.name), tpb.Role)

    @_waiting_handler
    def ListRoles(self, request: pb.ListRequest, context: grpc.ServicerContext) -> pb.ListRolesResponse:
        items, next_token = self.cluster.list_page(self.caller(context), Role, _page(request))
        return pb.ListRolesResponse(roles=[convert.to_pb(x, tpb.Role) for x in items], next_page_token=next_token)

    @_handler
    def DeleteRole(self, request: pb.DeleteRequest, context: grpc.ServicerContext) -> pb.DeleteResponse:
        self.cluster.delete_role(self.caller(context), request.name, request.revision)
        return pb.DeleteResponse()

    # ---- tokens
    @_handler
    def UpsertToken(self, request: pb.UpsertTokenRequest, context: grpc.ServicerContext) -> tpb.ProvisionToken:
        token = _decode_pb(ProvisionToken, request.token, "token")
        out = self.cluster.upsert_token(self.caller(context), token, request.create_only)
        return convert.to_pb(out, tpb.ProvisionToken)

    @_handler
    def GetToken(self, request: pb.GetRequest, context: grpc.ServicerContext) -> tpb.ProvisionToken:
        return convert.to_pb(self.cluster.get_token(self.caller(context), request.name), tpb.ProvisionToken)

    @_waiting_handler
    def ListTokens(self, request: pb.ListRequest, context: grpc.ServicerContext) -> pb.ListTokensResponse:
        items, next_token = self.cluster.list_page(self.caller(context), ProvisionToken, _page(request))
        return pb.ListTokensResponse(tokens=[convert.to_pb(x, tpb.ProvisionToken) for x in items],
                                     next_page_token=next_token)

    @_handler
    def DeleteToken(self, request: pb.DeleteRequest, context: grpc.ServicerContext) -> pb.DeleteResponse:
        self.cluster.delete_token(self.caller(context), request.name, request.revision)
        return pb.DeleteResponse()

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
    def GetBot(self, request: pb.GetRequest, context: grpc.ServicerContext) -> tpb.Bot:
        return convert.to_pb(self.cluster.get_bot(self.caller(context), request.name), tpb.Bot)

    @_waiting_handler
    def ListBots(self, request: pb.ListRequest, context: grpc.ServicerContext) -> pb.ListBotsResponse:
        items, next_token = self.cluster.list_page(self.caller(context), Bot, _page(request))
        return pb.ListBotsResponse(bots=[convert.to_pb(x, tpb.Bot) for x in items], next_page_token=next_token)

    @_handler
    def UpdateBot(self, request: pb.UpdateBotRequest, context: grpc.ServicerContext) -> tpb.Bot:
        bot = _decode_pb(Bot, request.bot, "bot")
        return convert.to_pb(self.cluster.update_bot(self.caller(context), bot), tpb.Bot)

    @_handler
    def DeleteBot(self, request: pb.DeleteRequest, context: grpc.ServicerContext) -> pb.DeleteResponse:
        self.cluster.delete_bot(self.caller(context), request.name, request.revision)
        return pb.DeleteResponse()

    @_handler
    def UnlockBot(self, request: pb.UnlockBotRequest, context: grpc.ServicerContext) -> tpb.Bot:
        return convert.to_pb(self.cluster.unlock_bot(self.caller(context), request.name), tpb.Bot)

    # ---- users
    @_handler
    def UpsertUser(self, request: pb.UpsertUserRequest, context: grpc.ServicerContext) -> tpb.User:
        user = _decode_pb(User, request.user, "user")
        return convert.to_pb(self.cluster.upsert_user(self.caller(context), user, request.create_only), tpb.User)

    @_handler
    def GetUser(self, request: pb.GetRequest, context: grpc.ServicerContext) -> tpb.User:
        return convert.to_pb(self.cluster.get_user(self.caller(context), request.name), tpb.User)

    @_waiting_handler
    def ListUsers(self, request: pb.ListRequest, context: grpc.ServicerContext) -> pb.ListUsersResponse:
        items, next_token = self.cluster.list_page(self.caller(context), User, _page(request))
        return pb.ListUsersResponse(users=[convert.to_pb(x, tpb.User) for x in items], next_page_token=next_token)

    @_handler
    def DeleteUser(self, request: pb.DeleteRequest, context: grpc.ServicerContext) -> pb.DeleteResponse:
        self.cluster.delete_user(self.caller(context), request.name, request.revision)
        return pb.DeleteResponse()

    # ---- nodes
    @_handler
    def UpsertNode(self, request: pb.UpsertNodeRequest, context: grpc.ServicerContext) -> tpb.Node:
        node = _decode_pb(Node, request.node, "node")
        return convert.to_pb(self.cluster.upsert_node(self.caller(context), node, request.create_only), tpb.Node)

    @_handler
    def GetNode(self, request: pb.GetRequest, context: grpc.ServicerContext) -> tpb.Node:
        return convert.to_pb(self.cluster.get_node(self.caller(context), request.name), tpb.Node)

    @_waiting_handler
    def ListNodes(self, request: pb.ListRequest, context: grpc.ServicerContext) -> pb.ListNodesResponse:
        items, next_token = self.cluster.list_nodes(self.caller(context), _page(request))
        return pb.ListNodesResponse(nodes=[convert.to_pb(x, tpb.Node) for x in items], next_page_token=next_token)

    @_handler
    def DeleteNode(self, request: pb.DeleteRequest, context: grpc.ServicerContext) -> pb.DeleteResponse:
        self.cluster.delete_node(self.caller(context), request.name, request.revision)
        return pb.DeleteResponse()

    # ---- certificates
    @_handler
    def RenewCerts(self, request: pb.RenewRequest, context: grpc.ServicerContext) -> tpb.Certs:
        return certs_pb(self.cluster.renew(self.caller(context), request.public_key, _ttl(request)))

    @_handler
    def IssueOutputCerts(self, request: pb.RenewRequest, context: grpc.ServicerContext) -> tpb.Certs:
        return certs_pb(self.cluster.issue_output_certs(self.caller(context), request.public_key, _ttl(request)))

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


def codec_json(details: dict[str, Any]) -> str:
    import json

    return json.dumps(codec.encode(details), sort_keys=True)
