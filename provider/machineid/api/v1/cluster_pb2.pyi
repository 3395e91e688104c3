import datetime
from collections.abc import Iterable as _Iterable
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar

from google.protobuf import descriptor as _descriptor
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import message as _message
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers

from machineid.api.v1 import types_pb2 as _types_pb2

DESCRIPTOR: _descriptor.FileDescriptor

class PingRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PingResponse(_message.Message):
    __slots__ = ("ca_pins", "cluster_name", "server_version", "tls_ca_certs")
    CLUSTER_NAME_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    CA_PINS_FIELD_NUMBER: _ClassVar[int]
    TLS_CA_CERTS_FIELD_NUMBER: _ClassVar[int]
    cluster_name: str
    server_version: str
    ca_pins: _containers.RepeatedScalarFieldContainer[str]
    tls_ca_certs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, cluster_name: str | None = ..., server_version: str | None = ..., ca_pins: _Iterable[str] | None = ..., tls_ca_certs: _Iterable[str] | None = ...) -> None: ...

class JoinRequest(_message.Message):
    __slots__ = ("join_method", "public_key", "token", "ttl")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    JOIN_METHOD_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    token: str
    join_method: str
    public_key: str
    ttl: _duration_pb2.Duration
    def __init__(self, token: str | None = ..., join_method: str | None = ..., public_key: str | None = ..., ttl: datetime.timedelta | _duration_pb2.Duration | _Mapping | None = ...) -> None: ...

class JoinResponse(_message.Message):
    __slots__ = ("bot_name", "certs")
    BOT_NAME_FIELD_NUMBER: _ClassVar[int]
    CERTS_FIELD_NUMBER: _ClassVar[int]
    bot_name: str
    certs: _types_pb2.Certs
    def __init__(self, bot_name: str | None = ..., certs: _types_pb2.Certs | _Mapping | None = ...) -> None: ...

class IAMChallengeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class IAMChallengeResponse(_message.Message):
    __slots__ = ("challenge",)
    CHALLENGE_FIELD_NUMBER: _ClassVar[int]
    challenge: str
    def __init__(self, challenge: str | None = ...) -> None: ...

class SignedHTTPRequest(_message.Message):
    __slots__ = ("body", "headers", "method", "url")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: str | None = ..., value: str | None = ...) -> None: ...
    METHOD_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    method: str
    url: str
    headers: _containers.ScalarMap[str, str]
    body: bytes
    def __init__(self, method: str | None = ..., url: str | None = ..., headers: _Mapping[str, str] | None = ..., body: bytes | None = ...) -> None: ...

class IAMJoinRequest(_message.Message):
    __slots__ = ("challenge", "public_key", "sts_request", "token", "ttl")
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
    def __init__(self, token: str | None = ..., challenge: str | None = ..., sts_request: SignedHTTPRequest | _Mapping | None = ..., public_key: str | None = ..., ttl: datetime.timedelta | _duration_pb2.Duration | _Mapping | None = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: str | None = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("name", "revision")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    name: str
    revision: str
    def __init__(self, name: str | None = ..., revision: str | None = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UpsertRoleRequest(_message.Message):
    __slots__ = ("create_only", "role")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CREATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    role: _types_pb2.Role
    create_only: bool
    def __init__(self, role: _types_pb2.Role | _Mapping | None = ..., create_only: bool | None = ...) -> None: ...

class ListRolesResponse(_message.Message):
    __slots__ = ("roles",)
    ROLES_FIELD_NUMBER: _ClassVar[int]
    roles: _containers.RepeatedCompositeFieldContainer[_types_pb2.Role]
    def __init__(self, roles: _Iterable[_types_pb2.Role | _Mapping] | None = ...) -> None: ...

class UpsertTokenRequest(_message.Message):
    __slots__ = ("create_only", "token")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    CREATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    token: _types_pb2.ProvisionToken
    create_only: bool
    def __init__(self, token: _types_pb2.ProvisionToken | _Mapping | None = ..., create_only: bool | None = ...) -> None: ...

class ListTokensResponse(_message.Message):
    __slots__ = ("tokens",)
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedCompositeFieldContainer[_types_pb2.ProvisionToken]
    def __init__(self, tokens: _Iterable[_types_pb2.ProvisionToken | _Mapping] | None = ...) -> None: ...

class CreateBotRequest(_message.Message):
    __slots__ = ("bot", "token_name", "token_ttl")
    BOT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_NAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TTL_FIELD_NUMBER: _ClassVar[int]
    bot: _types_pb2.Bot
    token_name: str
    token_ttl: _duration_pb2.Duration
    def __init__(self, bot: _types_pb2.Bot | _Mapping | None = ..., token_name: str | None = ..., token_ttl: datetime.timedelta | _duration_pb2.Duration | _Mapping | None = ...) -> None: ...

class BotResponse(_message.Message):
    __slots__ = ("bot", "ca_pins", "join_method", "token", "token_expires")
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
    def __init__(self, bot: _types_pb2.Bot | _Mapping | None = ..., token: str | None = ..., join_method: str | None = ..., token_expires: datetime.datetime | _timestamp_pb2.Timestamp | _Mapping | None = ..., ca_pins: _Iterable[str] | None = ...) -> None: ...

class UpdateBotRequest(_message.Message):
    __slots__ = ("bot",)
    BOT_FIELD_NUMBER: _ClassVar[int]
    bot: _types_pb2.Bot
    def __init__(self, bot: _types_pb2.Bot | _Mapping | None = ...) -> None: ...

class ListBotsResponse(_message.Message):
    __slots__ = ("bots",)
    BOTS_FIELD_NUMBER: _ClassVar[int]
    bots: _containers.RepeatedCompositeFieldContainer[_types_pb2.Bot]
    def __init__(self, bots: _Iterable[_types_pb2.Bot | _Mapping] | None = ...) -> None: ...

class UnlockBotRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: str | None = ...) -> None: ...

class UpsertUserRequest(_message.Message):
    __slots__ = ("create_only", "user")
    USER_FIELD_NUMBER: _ClassVar[int]
    CREATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    user: _types_pb2.User
    create_only: bool
    def __init__(self, user: _types_pb2.User | _Mapping | None = ..., create_only: bool | None = ...) -> None: ...

class ListUsersResponse(_message.Message):
    __slots__ = ("users",)
    USERS_FIELD_NUMBER: _ClassVar[int]
    users: _containers.RepeatedCompositeFieldContainer[_types_pb2.User]
    def __init__(self, users: _Iterable[_types_pb2.User | _Mapping] | None = ...) -> None: ...

class UpsertNodeRequest(_message.Message):
    __slots__ = ("create_only", "node")
    NODE_FIELD_NUMBER: _ClassVar[int]
    CREATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    node: _types_pb2.Node
    create_only: bool
    def __init__(self, node: _types_pb2.Node | _Mapping | None = ..., create_only: bool | None = ...) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[_types_pb2.Node]
    def __init__(self, nodes: _Iterable[_types_pb2.Node | _Mapping] | None = ...) -> None: ...

class RenewRequest(_message.Message):
    __slots__ = ("public_key", "ttl")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    public_key: str
    ttl: _duration_pb2.Duration
    def __init__(self, public_key: str | None = ..., ttl: datetime.timedelta | _duration_pb2.Duration | _Mapping | None = ...) -> None: ...

class SignUserRequest(_message.Message):
    __slots__ = ("public_key", "ttl", "user")
    USER_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    user: str
    public_key: str
    ttl: _duration_pb2.Duration
    def __init__(self, user: str | None = ..., public_key: str | None = ..., ttl: datetime.timedelta | _duration_pb2.Duration | _Mapping | None = ...) -> None: ...

class SignHostRequest(_message.Message):
    __slots__ = ("principals", "public_key", "ttl")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    PRINCIPALS_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    public_key: str
    principals: _containers.RepeatedScalarFieldContainer[str]
    ttl: _duration_pb2.Duration
    def __init__(self, public_key: str | None = ..., principals: _Iterable[str] | None = ..., ttl: datetime.timedelta | _duration_pb2.Duration | _Mapping | None = ...) -> None: ...

class SignHostResponse(_message.Message):
    __slots__ = ("ssh_cert",)
    SSH_CERT_FIELD_NUMBER: _ClassVar[int]
    ssh_cert: str
    def __init__(self, ssh_cert: str | None = ...) -> None: ...

class ExportCAsRequest(_message.Message):
    __slots__ = ("type",)
    TYPE_FIELD_NUMBER: _ClassVar[int]
    type: str
    def __init__(self, type: str | None = ...) -> None: ...

class ExportCAsResponse(_message.Message):
    __slots__ = ("cas",)
    CAS_FIELD_NUMBER: _ClassVar[int]
    cas: _containers.RepeatedCompositeFieldContainer[_types_pb2.CertAuthority]
    def __init__(self, cas: _Iterable[_types_pb2.CertAuthority | _Mapping] | None = ...) -> None: ...

class ListAuditEventsRequest(_message.Message):
    __slots__ = ("after_id", "limit")
    AFTER_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    after_id: int
    limit: int
    def __init__(self, after_id: int | None = ..., limit: int | None = ...) -> None: ...

class ListAuditEventsResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_types_pb2.AuditEvent]
    def __init__(self, events: _Iterable[_types_pb2.AuditEvent | _Mapping] | None = ...) -> None: ...
