import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from machineid.api.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PingRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PingResponse(_message.Message):
    __slots__ = ("cluster_name", "server_version", "ca_pins", "tls_ca_certs")
    CLUSTER_NAME_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    CA_PINS_FIELD_NUMBER: _ClassVar[int]
    TLS_CA_CERTS_FIELD_NUMBER: _ClassVar[int]
    cluster_name: str
    server_version: str
    ca_pins: _containers.RepeatedScalarFieldContainer[str]
    tls_ca_certs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, cluster_name: _Optional[str] = ..., server_version: _Optional[str] = ..., ca_pins: _Optional[_Iterable[str]] = ..., tls_ca_certs: _Optional[_Iterable[str]] = ...) -> None: ...

class JoinRequest(_message.Message):
    __slots__ = ("token", "join_method", "public_key", "ttl")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    JOIN_METHOD_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    token: str
    join_method: str
    public_key: str
    ttl: _duration_pb2.Duration
    def __init__(self, token: _Optional[str] = ..., join_method: _Optional[str] = ..., public_key: _Optional[str] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class JoinResponse(_message.Message):
    __slots__ = ("bot_name", "certs", "node_name")
    BOT_NAME_FIELD_NUMBER: _ClassVar[int]
    CERTS_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    bot_name: str
    certs: _types_pb2.Certs
    node_name: str
    def __init__(self, bot_name: _Optional[str] = ..., certs: _Optional[_Union[_types_pb2.Certs, _Mapping]] = ..., node_name: _Optional[str] = ...) -> None: ...

class IAMChallengeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class IAMChallengeResponse(_message.Message):
    __slots__ = ("challenge",)
    CHALLENGE_FIELD_NUMBER: _ClassVar[int]
    challenge: str
    def __init__(self, challenge: _Optional[str] = ...) -> None: ...

class SignedHTTPRequest(_message.Message):
    __slots__ = ("method", "url", "headers", "body")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    METHOD_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    method: str
    url: str
    headers: _containers.ScalarMap[str, str]
    body: bytes
    def __init__(self, method: _Optional[str] = ..., url: _Optional[str] = ..., headers: _Optional[_Mapping[str, str]] = ..., body: _Optional[bytes] = ...) -> None: ...

class IAMJoinRequest(_message.Message):
    __slots__ = ("token", "challenge", "sts_request", "public_key", "ttl")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    CHALLENGE_FIELD_NUMBER: _ClassVar[int]
    STS_REQUEST_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    token: str
    challenge: str
    sts_request: SignedHTTPRequest
    public_key: str
    ttl: _duration_pb2.Duration
    def __init__(self, token: _Optional[str] = ..., challenge: _Optional[str] = ..., sts_request: _Optional[_Union[SignedHTTPRequest, _Mapping]] = ..., public_key: _Optional[str] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class OIDCJoinRequest(_message.Message):
    __slots__ = ("token", "id_token", "public_key", "ttl")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    ID_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    token: str
    id_token: str
    public_key: str
    ttl: _duration_pb2.Duration
    def __init__(self, token: _Optional[str] = ..., id_token: _Optional[str] = ..., public_key: _Optional[str] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class BoundKeypairChallengeRequest(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: str
    def __init__(self, token: _Optional[str] = ...) -> None: ...

class BoundKeypairChallengeResponse(_message.Message):
    __slots__ = ("challenge", "rotate")
    CHALLENGE_FIELD_NUMBER: _ClassVar[int]
    ROTATE_FIELD_NUMBER: _ClassVar[int]
    challenge: str
    rotate: bool
    def __init__(self, challenge: _Optional[str] = ..., rotate: _Optional[bool] = ...) -> None: ...

class BoundKeypairJoinRequest(_message.Message):
    __slots__ = ("token", "challenge", "public_key", "ttl", "signature", "join_state", "new_public_key", "new_key_signature", "registration_secret")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    CHALLENGE_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    JOIN_STATE_FIELD_NUMBER: _ClassVar[int]
    NEW_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    NEW_KEY_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    REGISTRATION_SECRET_FIELD_NUMBER: _ClassVar[int]
    token: str
    challenge: str
    public_key: str
    ttl: _duration_pb2.Duration
    signature: bytes
    join_state: str
    new_public_key: str
    new_key_signature: bytes
    registration_secret: str
    def __init__(self, token: _Optional[str] = ..., challenge: _Optional[str] = ..., public_key: _Optional[str] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., signature: _Optional[bytes] = ..., join_state: _Optional[str] = ..., new_public_key: _Optional[str] = ..., new_key_signature: _Optional[bytes] = ..., registration_secret: _Optional[str] = ...) -> None: ...

class BoundKeypairJoinResponse(_message.Message):
    __slots__ = ("bot_name", "certs", "join_state", "bound_public_key", "node_name")
    BOT_NAME_FIELD_NUMBER: _ClassVar[int]
    CERTS_FIELD_NUMBER: _ClassVar[int]
    JOIN_STATE_FIELD_NUMBER: _ClassVar[int]
    BOUND_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    bot_name: str
    certs: _types_pb2.Certs
    join_state: str
    bound_public_key: str
    node_name: str
    def __init__(self, bot_name: _Optional[str] = ..., certs: _Optional[_Union[_types_pb2.Certs, _Mapping]] = ..., join_state: _Optional[str] = ..., bound_public_key: _Optional[str] = ..., node_name: _Optional[str] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("name", "revision")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    name: str
    revision: str
    def __init__(self, name: _Optional[str] = ..., revision: _Optional[str] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    labels: _containers.ScalarMap[str, str]
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class UpsertRoleRequest(_message.Message):
    __slots__ = ("role", "create_only")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CREATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    role: _types_pb2.Role
    create_only: bool
    def __init__(self, role: _Optional[_Union[_types_pb2.Role, _Mapping]] = ..., create_only: _Optional[bool] = ...) -> None: ...

class ListRolesResponse(_message.Message):
    __slots__ = ("roles", "next_page_token")
    ROLES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    roles: _containers.RepeatedCompositeFieldContainer[_types_pb2.Role]
    next_page_token: str
    def __init__(self, roles: _Optional[_Iterable[_Union[_types_pb2.Role, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpsertTokenRequest(_message.Message):
    __slots__ = ("token", "create_only")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    CREATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    token: _types_pb2.ProvisionToken
    create_only: bool
    def __init__(self, token: _Optional[_Union[_types_pb2.ProvisionToken, _Mapping]] = ..., create_only: _Optional[bool] = ...) -> None: ...

class ListTokensResponse(_message.Message):
    __slots__ = ("tokens", "next_page_token")
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedCompositeFieldContainer[_types_pb2.ProvisionToken]
    next_page_token: str
    def __init__(self, tokens: _Optional[_Iterable[_Union[_types_pb2.ProvisionToken, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CreateBotRequest(_message.Message):
    __slots__ = ("bot", "token_name", "token_ttl")
    BOT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_NAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TTL_FIELD_NUMBER: _ClassVar[int]
    bot: _types_pb2.Bot
    token_name: str
    token_ttl: _duration_pb2.Duration
    def __init__(self, bot: _Optional[_Union[_types_pb2.Bot, _Mapping]] = ..., token_name: _Optional[str] = ..., token_ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class BotResponse(_message.Message):
    __slots__ = ("bot", "token", "join_method", "token_expires", "ca_pins")
    BOT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    JOIN_METHOD_FIELD_NUMBER: _ClassVar[int]
    TOKEN_EXPIRES_FIELD_NUMBER: _ClassVar[int]
    CA_PINS_FIELD_NUMBER: _ClassVar[int]
    bot: _types_pb2.Bot
    token: str
    join_method: str
    token_expires: _timestamp_pb2.Timestamp
    ca_pins: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, bot: _Optional[_Union[_types_pb2.Bot, _Mapping]] = ..., token: _Optional[str] = ..., join_method: _Optional[str] = ..., token_expires: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ca_pins: _Optional[_Iterable[str]] = ...) -> None: ...

class UpdateBotRequest(_message.Message):
    __slots__ = ("bot",)
    BOT_FIELD_NUMBER: _ClassVar[int]
    bot: _types_pb2.Bot
    def __init__(self, bot: _Optional[_Union[_types_pb2.Bot, _Mapping]] = ...) -> None: ...

class ListBotsResponse(_message.Message):
    __slots__ = ("bots", "next_page_token")
    BOTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    bots: _containers.RepeatedCompositeFieldContainer[_types_pb2.Bot]
    next_page_token: str
    def __init__(self, bots: _Optional[_Iterable[_Union[_types_pb2.Bot, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UnlockBotRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class UnlockNodeRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class UpsertUserRequest(_message.Message):
    __slots__ = ("user", "create_only")
    USER_FIELD_NUMBER: _ClassVar[int]
    CREATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    user: _types_pb2.User
    create_only: bool
    def __init__(self, user: _Optional[_Union[_types_pb2.User, _Mapping]] = ..., create_only: _Optional[bool] = ...) -> None: ...

class ListUsersResponse(_message.Message):
    __slots__ = ("users", "next_page_token")
    USERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    users: _containers.RepeatedCompositeFieldContainer[_types_pb2.User]
    next_page_token: str
    def __init__(self, users: _Optional[_Iterable[_Union[_types_pb2.User, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpsertNodeRequest(_message.Message):
    __slots__ = ("node", "create_only")
    NODE_FIELD_NUMBER: _ClassVar[int]
    CREATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    node: _types_pb2.Node
    create_only: bool
    def __init__(self, node: _Optional[_Union[_types_pb2.Node, _Mapping]] = ..., create_only: _Optional[bool] = ...) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes", "next_page_token")
    NODES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[_types_pb2.Node]
    next_page_token: str
    def __init__(self, nodes: _Optional[_Iterable[_Union[_types_pb2.Node, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpsertLockRequest(_message.Message):
    __slots__ = ("lock", "create_only")
    LOCK_FIELD_NUMBER: _ClassVar[int]
    CREATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    lock: _types_pb2.Lock
    create_only: bool
    def __init__(self, lock: _Optional[_Union[_types_pb2.Lock, _Mapping]] = ..., create_only: _Optional[bool] = ...) -> None: ...

class ListLocksResponse(_message.Message):
    __slots__ = ("locks", "next_page_token")
    LOCKS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    locks: _containers.RepeatedCompositeFieldContainer[_types_pb2.Lock]
    next_page_token: str
    def __init__(self, locks: _Optional[_Iterable[_Union[_types_pb2.Lock, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RenewRequest(_message.Message):
    __slots__ = ("public_key", "ttl", "heartbeat")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    public_key: str
    ttl: _duration_pb2.Duration
    heartbeat: _types_pb2.BotInstanceHeartbeat
    def __init__(self, public_key: _Optional[str] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., heartbeat: _Optional[_Union[_types_pb2.BotInstanceHeartbeat, _Mapping]] = ...) -> None: ...

class ListBotInstancesRequest(_message.Message):
    __slots__ = ("bot_name", "page_size", "page_token")
    BOT_NAME_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    bot_name: str
    page_size: int
    page_token: str
    def __init__(self, bot_name: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListBotInstancesResponse(_message.Message):
    __slots__ = ("instances", "next_page_token")
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    instances: _containers.RepeatedCompositeFieldContainer[_types_pb2.BotInstance]
    next_page_token: str
    def __init__(self, instances: _Optional[_Iterable[_Union[_types_pb2.BotInstance, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetBotInstanceRequest(_message.Message):
    __slots__ = ("instance_id",)
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    def __init__(self, instance_id: _Optional[str] = ...) -> None: ...

class AgentCycleRequest(_message.Message):
    __slots__ = ("public_key", "ttl", "output_public_key", "output_ttl", "list_nodes", "node_page_size", "heartbeat")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TTL_FIELD_NUMBER: _ClassVar[int]
    LIST_NODES_FIELD_NUMBER: _ClassVar[int]
    NODE_PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    public_key: str
    ttl: _duration_pb2.Duration
    output_public_key: str
    output_ttl: _duration_pb2.Duration
    list_nodes: bool
    node_page_size: int
    heartbeat: _types_pb2.BotInstanceHeartbeat
    def __init__(self, public_key: _Optional[str] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., output_public_key: _Optional[str] = ..., output_ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., list_nodes: _Optional[bool] = ..., node_page_size: _Optional[int] = ..., heartbeat: _Optional[_Union[_types_pb2.BotInstanceHeartbeat, _Mapping]] = ...) -> None: ...

class AgentCycleResponse(_message.Message):
    __slots__ = ("certs", "output_certs", "nodes", "next_page_token", "nodes_error")
    CERTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_CERTS_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NODES_ERROR_FIELD_NUMBER: _ClassVar[int]
    certs: _types_pb2.Certs
    output_certs: _types_pb2.Certs
    nodes: _containers.RepeatedCompositeFieldContainer[_types_pb2.Node]
    next_page_token: str
    nodes_error: str
    def __init__(self, certs: _Optional[_Union[_types_pb2.Certs, _Mapping]] = ..., output_certs: _Optional[_Union[_types_pb2.Certs, _Mapping]] = ..., nodes: _Optional[_Iterable[_Union[_types_pb2.Node, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., nodes_error: _Optional[str] = ...) -> None: ...

class SignUserRequest(_message.Message):
    __slots__ = ("user", "public_key", "ttl")
    USER_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    user: str
    public_key: str
    ttl: _duration_pb2.Duration
    def __init__(self, user: _Optional[str] = ..., public_key: _Optional[str] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class SignHostRequest(_message.Message):
    __slots__ = ("public_key", "principals", "ttl")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    PRINCIPALS_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    public_key: str
    principals: _containers.RepeatedScalarFieldContainer[str]
    ttl: _duration_pb2.Duration
    def __init__(self, public_key: _Optional[str] = ..., principals: _Optional[_Iterable[str]] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class SignHostResponse(_message.Message):
    __slots__ = ("ssh_cert",)
    SSH_CERT_FIELD_NUMBER: _ClassVar[int]
    ssh_cert: str
    def __init__(self, ssh_cert: _Optional[str] = ...) -> None: ...

class ExportCAsRequest(_message.Message):
    __slots__ = ("type",)
    TYPE_FIELD_NUMBER: _ClassVar[int]
    type: str
    def __init__(self, type: _Optional[str] = ...) -> None: ...

class ExportCAsResponse(_message.Message):
    __slots__ = ("cas",)
    CAS_FIELD_NUMBER: _ClassVar[int]
    cas: _containers.RepeatedCompositeFieldContainer[_types_pb2.CertAuthority]
    def __init__(self, cas: _Optional[_Iterable[_Union[_types_pb2.CertAuthority, _Mapping]]] = ...) -> None: ...

class ListAuditEventsRequest(_message.Message):
    __slots__ = ("after_id", "limit", "since", "action", "actor")
    AFTER_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    after_id: int
    limit: int
    since: _timestamp_pb2.Timestamp
    action: str
    actor: str
    def __init__(self, after_id: _Optional[int] = ..., limit: _Optional[int] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., action: _Optional[str] = ..., actor: _Optional[str] = ...) -> None: ...

class ListAuditEventsResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_types_pb2.AuditEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[_types_pb2.AuditEvent, _Mapping]]] = ...) -> None: ...

class NodeSyncRequest(_message.Message):
    __slots__ = ("version", "heartbeat_interval", "host_public_key", "applied_revision", "revocations_version")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    HOST_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    APPLIED_REVISION_FIELD_NUMBER: _ClassVar[int]
    REVOCATIONS_VERSION_FIELD_NUMBER: _ClassVar[int]
    version: str
    heartbeat_interval: _duration_pb2.Duration
    host_public_key: str
    applied_revision: str
    revocations_version: int
    def __init__(self, version: _Optional[str] = ..., heartbeat_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., host_public_key: _Optional[str] = ..., applied_revision: _Optional[str] = ..., revocations_version: _Optional[int] = ...) -> None: ...

class NodeSyncResponse(_message.Message):
    __slots__ = ("node_name", "cluster_name", "labels", "revision", "host_cert_principals", "host_cert", "host_cert_expires", "ssh_user_ca_keys", "revocation_max_age", "host_cert_ttl", "revocations_version", "revoked_keys")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    HOST_CERT_PRINCIPALS_FIELD_NUMBER: _ClassVar[int]
    HOST_CERT_FIELD_NUMBER: _ClassVar[int]
    HOST_CERT_EXPIRES_FIELD_NUMBER: _ClassVar[int]
    SSH_USER_CA_KEYS_FIELD_NUMBER: _ClassVar[int]
    REVOCATION_MAX_AGE_FIELD_NUMBER: _ClassVar[int]
    HOST_CERT_TTL_FIELD_NUMBER: _ClassVar[int]
    REVOCATIONS_VERSION_FIELD_NUMBER: _ClassVar[int]
    REVOKED_KEYS_FIELD_NUMBER: _ClassVar[int]
    node_name: str
    cluster_name: str
    labels: _containers.ScalarMap[str, str]
    revision: str
    host_cert_principals: _containers.RepeatedScalarFieldContainer[str]
    host_cert: str
    host_cert_expires: _timestamp_pb2.Timestamp
    ssh_user_ca_keys: _containers.RepeatedScalarFieldContainer[str]
    revocation_max_age: _duration_pb2.Duration
    host_cert_ttl: _duration_pb2.Duration
    revocations_version: int
    revoked_keys: bytes
    def __init__(self, node_name: _Optional[str] = ..., cluster_name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., revision: _Optional[str] = ..., host_cert_principals: _Optional[_Iterable[str]] = ..., host_cert: _Optional[str] = ..., host_cert_expires: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ssh_user_ca_keys: _Optional[_Iterable[str]] = ..., revocation_max_age: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., host_cert_ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., revocations_version: _Optional[int] = ..., revoked_keys: _Optional[bytes] = ...) -> None: ...
