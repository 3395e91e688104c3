import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Metadata(_message.Message):
    __slots__ = ("name", "description", "labels", "expires", "revision", "created", "updated")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
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
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., expires: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revision: _Optional[str] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class StringList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...

class Rule(_message.Message):
    __slots__ = ("resources", "verbs")
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    VERBS_FIELD_NUMBER: _ClassVar[int]
    resources: _containers.RepeatedScalarFieldContainer[str]
    verbs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, resources: _Optional[_Iterable[str]] = ..., verbs: _Optional[_Iterable[str]] = ...) -> None: ...

class RoleConditions(_message.Message):
    __slots__ = ("logins", "node_labels", "rules")
    class NodeLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: StringList
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[StringList, _Mapping]] = ...) -> None: ...
    LOGINS_FIELD_NUMBER: _ClassVar[int]
    NODE_LABELS_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    logins: _containers.RepeatedScalarFieldContainer[str]
    node_labels: _containers.MessageMap[str, StringList]
    rules: _containers.RepeatedCompositeFieldContainer[Rule]
    def __init__(self, logins: _Optional[_Iterable[str]] = ..., node_labels: _Optional[_Mapping[str, StringList]] = ..., rules: _Optional[_Iterable[_Union[Rule, _Mapping]]] = ...) -> None: ...

class RoleOptions(_message.Message):
    __slots__ = ("max_session_ttl",)
    MAX_SESSION_TTL_FIELD_NUMBER: _ClassVar[int]
    max_session_ttl: str
    def __init__(self, max_session_ttl: _Optional[str] = ...) -> None: ...

class RoleSpec(_message.Message):
    __slots__ = ("allow", "deny", "options")
    ALLOW_FIELD_NUMBER: _ClassVar[int]
    DENY_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    allow: RoleConditions
    deny: RoleConditions
    options: RoleOptions
    def __init__(self, allow: _Optional[_Union[RoleConditions, _Mapping]] = ..., deny: _Optional[_Union[RoleConditions, _Mapping]] = ..., options: _Optional[_Union[RoleOptions, _Mapping]] = ...) -> None: ...

class Role(_message.Message):
    __slots__ = ("metadata", "spec")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    metadata: Metadata
    spec: RoleSpec
    def __init__(self, metadata: _Optional[_Union[Metadata, _Mapping]] = ..., spec: _Optional[_Union[RoleSpec, _Mapping]] = ...) -> None: ...

class TokenRule(_message.Message):
    __slots__ = ("aws_account", "aws_arn")
    AWS_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    AWS_ARN_FIELD_NUMBER: _ClassVar[int]
    aws_account: str
    aws_arn: str
    def __init__(self, aws_account: _Optional[str] = ..., aws_arn: _Optional[str] = ...) -> None: ...

class BoundKeypairOnboarding(_message.Message):
    __slots__ = ("initial_public_key", "registration_secret", "must_register_before")
    INITIAL_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    REGISTRATION_SECRET_FIELD_NUMBER: _ClassVar[int]
    MUST_REGISTER_BEFORE_FIELD_NUMBER: _ClassVar[int]
    initial_public_key: str
    registration_secret: str
    must_register_before: _timestamp_pb2.Timestamp
    def __init__(self, initial_public_key: _Optional[str] = ..., registration_secret: _Optional[str] = ..., must_register_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class BoundKeypairRecovery(_message.Message):
    __slots__ = ("mode", "limit")
    MODE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    mode: str
    limit: int
    def __init__(self, mode: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class BoundKeypair(_message.Message):
    __slots__ = ("onboarding", "recovery", "rotate_after")
    ONBOARDING_FIELD_NUMBER: _ClassVar[int]
    RECOVERY_FIELD_NUMBER: _ClassVar[int]
    ROTATE_AFTER_FIELD_NUMBER: _ClassVar[int]
    onboarding: BoundKeypairOnboarding
    recovery: BoundKeypairRecovery
    rotate_after: _timestamp_pb2.Timestamp
    def __init__(self, onboarding: _Optional[_Union[BoundKeypairOnboarding, _Mapping]] = ..., recovery: _Optional[_Union[BoundKeypairRecovery, _Mapping]] = ..., rotate_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ProvisionTokenSpec(_message.Message):
    __slots__ = ("roles", "join_method", "bot_name", "allow", "bound_keypair")
    ROLES_FIELD_NUMBER: _ClassVar[int]
    JOIN_METHOD_FIELD_NUMBER: _ClassVar[int]
    BOT_NAME_FIELD_NUMBER: _ClassVar[int]
    ALLOW_FIELD_NUMBER: _ClassVar[int]
    BOUND_KEYPAIR_FIELD_NUMBER: _ClassVar[int]
    roles: _containers.RepeatedScalarFieldContainer[str]
    join_method: str
    bot_name: str
    allow: _containers.RepeatedCompositeFieldContainer[TokenRule]
    bound_keypair: BoundKeypair
    def __init__(self, roles: _Optional[_Iterable[str]] = ..., join_method: _Optional[str] = ..., bot_name: _Optional[str] = ..., allow: _Optional[_Iterable[_Union[TokenRule, _Mapping]]] = ..., bound_keypair: _Optional[_Union[BoundKeypair, _Mapping]] = ...) -> None: ...

class ProvisionTokenStatus(_message.Message):
    __slots__ = ("bound_public_key", "recovery_count", "last_rotated_at", "join_sequence")
    BOUND_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    RECOVERY_COUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_ROTATED_AT_FIELD_NUMBER: _ClassVar[int]
    JOIN_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    bound_public_key: str
    recovery_count: int
    last_rotated_at: _timestamp_pb2.Timestamp
    join_sequence: int
    def __init__(self, bound_public_key: _Optional[str] = ..., recovery_count: _Optional[int] = ..., last_rotated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., join_sequence: _Optional[int] = ...) -> None: ...

class ProvisionToken(_message.Message):
    __slots__ = ("metadata", "spec", "status")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    metadata: Metadata
    spec: ProvisionTokenSpec
    status: ProvisionTokenStatus
    def __init__(self, metadata: _Optional[_Union[Metadata, _Mapping]] = ..., spec: _Optional[_Union[ProvisionTokenSpec, _Mapping]] = ..., status: _Optional[_Union[ProvisionTokenStatus, _Mapping]] = ...) -> None: ...

class BotSpec(_message.Message):
    __slots__ = ("roles", "traits")
    class TraitsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: StringList
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[StringList, _Mapping]] = ...) -> None: ...
    ROLES_FIELD_NUMBER: _ClassVar[int]
    TRAITS_FIELD_NUMBER: _ClassVar[int]
    roles: _containers.RepeatedScalarFieldContainer[str]
    traits: _containers.MessageMap[str, StringList]
    def __init__(self, roles: _Optional[_Iterable[str]] = ..., traits: _Optional[_Mapping[str, StringList]] = ...) -> None: ...

class BotStatus(_message.Message):
    __slots__ = ("user_name", "role_name", "generation", "instance_id", "locked", "lock_reason", "last_join", "join_token", "spent_tokens")
    USER_NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_NAME_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    LOCKED_FIELD_NUMBER: _ClassVar[int]
    LOCK_REASON_FIELD_NUMBER: _ClassVar[int]
    LAST_JOIN_FIELD_NUMBER: _ClassVar[int]
    JOIN_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SPENT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    user_name: str
    role_name: str
    generation: int
    instance_id: str
    locked: bool
    lock_reason: str
    last_join: _timestamp_pb2.Timestamp
    join_token: str
    spent_tokens: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, user_name: _Optional[str] = ..., role_name: _Optional[str] = ..., generation: _Optional[int] = ..., instance_id: _Optional[str] = ..., locked: _Optional[bool] = ..., lock_reason: _Optional[str] = ..., last_join: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., join_token: _Optional[str] = ..., spent_tokens: _Optional[_Iterable[str]] = ...) -> None: ...

class Bot(_message.Message):
    __slots__ = ("metadata", "spec", "status")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    metadata: Metadata
    spec: BotSpec
    status: BotStatus
    def __init__(self, metadata: _Optional[_Union[Metadata, _Mapping]] = ..., spec: _Optional[_Union[BotSpec, _Mapping]] = ..., status: _Optional[_Union[BotStatus, _Mapping]] = ...) -> None: ...

class UserSpec(_message.Message):
    __slots__ = ("roles", "traits", "bot_name")
    class TraitsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: StringList
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[StringList, _Mapping]] = ...) -> None: ...
    ROLES_FIELD_NUMBER: _ClassVar[int]
    TRAITS_FIELD_NUMBER: _ClassVar[int]
    BOT_NAME_FIELD_NUMBER: _ClassVar[int]
    roles: _containers.RepeatedScalarFieldContainer[str]
    traits: _containers.MessageMap[str, StringList]
    bot_name: str
    def __init__(self, roles: _Optional[_Iterable[str]] = ..., traits: _Optional[_Mapping[str, StringList]] = ..., bot_name: _Optional[str] = ...) -> None: ...

class User(_message.Message):
    __slots__ = ("metadata", "spec")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    metadata: Metadata
    spec: UserSpec
    def __init__(self, metadata: _Optional[_Union[Metadata, _Mapping]] = ..., spec: _Optional[_Union[UserSpec, _Mapping]] = ...) -> None: ...

class NodeSpec(_message.Message):
    __slots__ = ("addr",)
    ADDR_FIELD_NUMBER: _ClassVar[int]
    addr: str
    def __init__(self, addr: _Optional[str] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("metadata", "spec")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    metadata: Metadata
    spec: NodeSpec
    def __init__(self, metadata: _Optional[_Union[Metadata, _Mapping]] = ..., spec: _Optional[_Union[NodeSpec, _Mapping]] = ...) -> None: ...

class Certs(_message.Message):
    __slots__ = ("ssh_cert", "tls_cert", "tls_ca_certs", "ssh_host_ca_keys", "ssh_user_ca_keys", "expires", "renewable", "generation")
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
    def __init__(self, ssh_cert: _Optional[str] = ..., tls_cert: _Optional[str] = ..., tls_ca_certs: _Optional[_Iterable[str]] = ..., ssh_host_ca_keys: _Optional[_Iterable[str]] = ..., ssh_user_ca_keys: _Optional[_Iterable[str]] = ..., expires: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., renewable: _Optional[bool] = ..., generation: _Optional[int] = ...) -> None: ...

class CertAuthority(_message.Message):
    __slots__ = ("type", "cluster_name", "public_data", "pin")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_NAME_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_DATA_FIELD_NUMBER: _ClassVar[int]
    PIN_FIELD_NUMBER: _ClassVar[int]
    type: str
    cluster_name: str
    public_data: str
    pin: str
    def __init__(self, type: _Optional[str] = ..., cluster_name: _Optional[str] = ..., public_data: _Optional[str] = ..., pin: _Optional[str] = ...) -> None: ...

class AuditEvent(_message.Message):
    __slots__ = ("id", "time", "actor", "action", "target", "outcome", "details")
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
    def __init__(self, id: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor: _Optional[str] = ..., action: _Optional[str] = ..., target: _Optional[str] = ..., outcome: _Optional[str] = ..., details: _Optional[str] = ...) -> None: ...
