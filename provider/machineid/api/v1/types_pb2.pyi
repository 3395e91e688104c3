import datetime
from collections.abc import Iterable as _Iterable
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar

from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers

DESCRIPTOR: _descriptor.FileDescriptor

class Metadata(_message.Message):
    __slots__ = ("created", "description", "expires", "labels", "name", "revision", "updated")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: str | None = ..., value: str | None = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    labels: _containers.ScalarMap[str, str]
    expires: _timestamp_pb2.Timestamp
    revision: str
    created: _timestamp_pb2.Timestamp
    updated: _timestamp_pb2.Timestamp
    def __init__(self, name: str | None = ..., description: str | None = ..., labels: _Mapping[str, str] | None = ..., expires: datetime.datetime | _timestamp_pb2.Timestamp | _Mapping | None = ..., revision: str | None = ..., created: datetime.datetime | _timestamp_pb2.Timestamp | _Mapping | None = ..., updated: datetime.datetime | _timestamp_pb2.Timestamp | _Mapping | None = ...) -> None: ...

class StringList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Iterable[str] | None = ...) -> None: ...

class Rule(_message.Message):
    __slots__ = ("resources", "verbs")
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    VERBS_FIELD_NUMBER: _ClassVar[int]
    resources: _containers.RepeatedScalarFieldContainer[str]
    verbs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, resources: _Iterable[str] | None = ..., verbs: _Iterable[str] | None = ...) -> None: ...

class RoleConditions(_message.Message):
    __slots__ = ("logins", "node_labels", "rules")
    class NodeLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: StringList
        def __init__(self, key: str | None = ..., value: StringList | _Mapping | None = ...) -> None: ...
    LOGINS_FIELD_NUMBER: _ClassVar[int]
    NODE_LABELS_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    logins: _containers.RepeatedScalarFieldContainer[str]
    node_labels: _containers.MessageMap[str, StringList]
    rules: _containers.RepeatedCompositeFieldContainer[Rule]
    def __init__(self, logins: _Iterable[str] | None = ..., node_labels: _Mapping[str, StringList] | None = ..., rules: _Iterable[Rule | _Mapping] | None = ...) -> None: ...

class RoleOptions(_message.Message):
    __slots__ = ("max_session_ttl",)
    MAX_SESSION_TTL_FIELD_NUMBER: _ClassVar[int]
    max_session_ttl: str
    def __init__(self, max_session_ttl: str | None = ...) -> None: ...

class RoleSpec(_message.Message):
    __slots__ = ("allow", "deny", "options")
    ALLOW_FIELD_NUMBER: _ClassVar[int]
    DENY_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    allow: RoleConditions
    deny: RoleConditions
    options: RoleOptions
    def __init__(self, allow: RoleConditions | _Mapping | None = ..., deny: RoleConditions | _Mapping | None = ..., options: RoleOptions | _Mapping | None = ...) -> None: ...

class Role(_message.Message):
    __slots__ = ("metadata", "spec")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    metadata: Metadata
    spec: RoleSpec
    def __init__(self, metadata: Metadata | _Mapping | None = ..., spec: RoleSpec | _Mapping | None = ...) -> None: ...

class TokenRule(_message.Message):
    __slots__ = ("aws_account", "aws_arn")
    AWS_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    AWS_ARN_FIELD_NUMBER: _ClassVar[int]
    aws_account: str
    aws_arn: str
    def __init__(self, aws_account: str | None = ..., aws_arn: str | None = ...) -> None: ...

class ProvisionTokenSpec(_message.Message):
    __slots__ = ("allow", "bot_name", "join_method", "roles")
    ROLES_FIELD_NUMBER: _ClassVar[int]
    JOIN_METHOD_FIELD_NUMBER: _ClassVar[int]
    BOT_NAME_FIELD_NUMBER: _ClassVar[int]
    ALLOW_FIELD_NUMBER: _ClassVar[int]
    roles: _containers.RepeatedScalarFieldContainer[str]
    join_method: str
    bot_name: str
    allow: _containers.RepeatedCompositeFieldContainer[TokenRule]
    def __init__(self, roles: _Iterable[str] | None = ..., join_method: str | None = ..., bot_name: str | None = ..., allow: _Iterable[TokenRule | _Mapping] | None = ...) -> None: ...

class ProvisionToken(_message.Message):
    __slots__ = ("metadata", "spec")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    metadata: Metadata
    spec: ProvisionTokenSpec
    def __init__(self, metadata: Metadata | _Mapping | None = ..., spec: ProvisionTokenSpec | _Mapping | None = ...) -> None: ...

class BotSpec(_message.Message):
    __slots__ = ("roles", "traits")
    class TraitsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: StringList
        def __init__(self, key: str | None = ..., value: StringList | _Mapping | None = ...) -> None: ...
    ROLES_FIELD_NUMBER: _ClassVar[int]
    TRAITS_FIELD_NUMBER: _ClassVar[int]
    roles: _containers.RepeatedScalarFieldContainer[str]
    traits: _containers.MessageMap[str, StringList]
    def __init__(self, roles: _Iterable[str] | None = ..., traits: _Mapping[str, StringList] | None = ...) -> None: ...

class BotStatus(_message.Message):
    __slots__ = ("generation", "instance_id", "last_join", "lock_reason", "locked", "role_name", "user_name")
    USER_NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_NAME_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    LOCKED_FIELD_NUMBER: _ClassVar[int]
    LOCK_REASON_FIELD_NUMBER: _ClassVar[int]
    LAST_JOIN_FIELD_NUMBER: _ClassVar[int]
    user_name: str
    role_name: str
    generation: int
    instance_id: str
    locked: bool
    lock_reason: str
    last_join: _timestamp_pb2.Timestamp
    def __init__(self, user_name: str | None = ..., role_name: str | None = ..., generation: int | None = ..., instance_id: str | None = ..., locked: bool | None = ..., lock_reason: str | None = ..., last_join: datetime.datetime | _timestamp_pb2.Timestamp | _Mapping | None = ...) -> None: ...

class Bot(_message.Message):
    __slots__ = ("metadata", "spec", "status")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    metadata: Metadata
    spec: BotSpec
    status: BotStatus
    def __init__(self, metadata: Metadata | _Mapping | None = ..., spec: BotSpec | _Mapping | None = ..., status: BotStatus | _Mapping | None = ...) -> None: ...

class UserSpec(_message.Message):
    __slots__ = ("bot_name", "roles", "traits")
    class TraitsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: StringList
        def __init__(self, key: str | None = ..., value: StringList | _Mapping | None = ...) -> None: ...
    ROLES_FIELD_NUMBER: _ClassVar[int]
    TRAITS_FIELD_NUMBER: _ClassVar[int]
    BOT_NAME_FIELD_NUMBER: _ClassVar[int]
    roles: _containers.RepeatedScalarFieldContainer[str]
    traits: _containers.MessageMap[str, StringList]
    bot_name: str
    def __init__(self, roles: _Iterable[str] | None = ..., traits: _Mapping[str, StringList] | None = ..., bot_name: str | None = ...) -> None: ...

class User(_message.Message):
    __slots__ = ("metadata", "spec")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    metadata: Metadata
    spec: UserSpec
    def __init__(self, metadata: Metadata | _Mapping | None = ..., spec: UserSpec | _Mapping | None = ...) -> None: ...

class NodeSpec(_message.Message):
    __slots__ = ("addr",)
    ADDR_FIELD_NUMBER: _ClassVar[int]
    addr: str
    def __init__(self, addr: str | None = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("metadata", "spec")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    metadata: Metadata
    spec: NodeSpec
    def __init__(self, metadata: Metadata | _Mapping | None = ..., spec: NodeSpec | _Mapping | None = ...) -> None: ...

class Certs(_message.Message):
    __slots__ = ("expires", "generation", "renewable", "ssh_cert", "ssh_host_ca_keys", "ssh_user_ca_keys", "tls_ca_certs", "tls_cert")
    SSH_CERT_FIELD_NUMBER: _ClassVar[int]
    TLS_CERT_FIELD_NUMBER: _ClassVar[int]
    TLS_CA_CERTS_FIELD_NUMBER: _ClassVar[int]
    SSH_HOST_CA_KEYS_FIELD_NUMBER: _ClassVar[int]
    SSH_USER_CA_KEYS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    RENEWABLE_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    ssh_cert: str
    tls_cert: str
    tls_ca_certs: _containers.RepeatedScalarFieldContainer[str]
    ssh_host_ca_keys: _containers.RepeatedScalarFieldContainer[str]
    ssh_user_ca_keys: _containers.RepeatedScalarFieldContainer[str]
    expires: _timestamp_pb2.Timestamp
    renewable: bool
    generation: int
    def __init__(self, ssh_cert: str | None = ..., tls_cert: str | None = ..., tls_ca_certs: _Iterable[str] | None = ..., ssh_host_ca_keys: _Iterable[str] | None = ..., ssh_user_ca_keys: _Iterable[str] | None = ..., expires: datetime.datetime | _timestamp_pb2.Timestamp | _Mapping | None = ..., renewable: bool | None = ..., generation: int | None = ...) -> None: ...

class CertAuthority(_message.Message):
    __slots__ = ("cluster_name", "pin", "public_data", "type")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_NAME_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_DATA_FIELD_NUMBER: _ClassVar[int]
    PIN_FIELD_NUMBER: _ClassVar[int]
    type: str
    cluster_name: str
    public_data: str
    pin: str
    def __init__(self, type: str | None = ..., cluster_name: str | None = ..., public_data: str | None = ..., pin: str | None = ...) -> None: ...

class AuditEvent(_message.Message):
    __slots__ = ("action", "actor", "details", "id", "outcome", "target", "time")
    ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    id: int
    time: _timestamp_pb2.Timestamp
    actor: str
    action: str
    target: str
    outcome: str
    details: str
    def __init__(self, id: int | None = ..., time: datetime.datetime | _timestamp_pb2.Timestamp | _Mapping | None = ..., actor: str | None = ..., action: str | None = ..., target: str | None = ..., outcome: str | None = ..., details: str | None = ...) -> None: ...
