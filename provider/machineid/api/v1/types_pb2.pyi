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

class GitHubRule(_message.Message):
    __slots__ = ("sub", "repository", "repository_owner", "workflow", "environment", "actor", "ref", "ref_type")
    SUB_FIELD_NUMBER: _ClassVar[int]
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    REPOSITORY_OWNER_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    REF_TYPE_FIELD_NUMBER: _ClassVar[int]
    sub: str
    repository: str
    repository_owner: str
    workflow: str
    environment: str
    actor: str
    ref: str
    ref_type: str
    def __init__(self, sub: _Optional[str] = ..., repository: _Optional[str] = ..., repository_owner: _Optional[str] = ..., workflow: _Optional[str] = ..., environment: _Optional[str] = ..., actor: _Optional[str] = ..., ref: _Optional[str] = ..., ref_type: _Optional[str] = ...) -> None: ...

class GitHubJoin(_message.Message):
    __slots__ = ("allow", "issuer", "audience", "static_jwks", "ca_bundle", "max_lifetime")
    ALLOW_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    STATIC_JWKS_FIELD_NUMBER: _ClassVar[int]
    CA_BUNDLE_FIELD_NUMBER: _ClassVar[int]
    MAX_LIFETIME_FIELD_NUMBER: _ClassVar[int]
    allow: _containers.RepeatedCompositeFieldContainer[GitHubRule]
    issuer: str
    audience: str
    static_jwks: str
    ca_bundle: str
    max_lifetime: str
    def __init__(self, allow: _Optional[_Iterable[_Union[GitHubRule, _Mapping]]] = ..., issuer: _Optional[str] = ..., audience: _Optional[str] = ..., static_jwks: _Optional[str] = ..., ca_bundle: _Optional[str] = ..., max_lifetime: _Optional[str] = ...) -> None: ...

class GitLabRule(_message.Message):
    __slots__ = ("project_path", "namespace_path", "ref", "sub", "pipeline_source", "environment", "ref_type", "ref_protected", "environment_protected", "deployment_tier")
    PROJECT_PATH_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_PATH_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    SUB_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    REF_TYPE_FIELD_NUMBER: _ClassVar[int]
    REF_PROTECTED_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_PROTECTED_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_TIER_FIELD_NUMBER: _ClassVar[int]
    project_path: str
    namespace_path: str
    ref: str
    sub: str
    pipeline_source: str
    environment: str
    ref_type: str
    ref_protected: str
    environment_protected: str
    deployment_tier: str
    def __init__(self, project_path: _Optional[str] = ..., namespace_path: _Optional[str] = ..., ref: _Optional[str] = ..., sub: _Optional[str] = ..., pipeline_source: _Optional[str] = ..., environment: _Optional[str] = ..., ref_type: _Optional[str] = ..., ref_protected: _Optional[str] = ..., environment_protected: _Optional[str] = ..., deployment_tier: _Optional[str] = ...) -> None: ...

class GitLabJoin(_message.Message):
    __slots__ = ("allow", "issuer", "audience", "static_jwks", "ca_bundle", "max_lifetime", "reuse")
    ALLOW_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    STATIC_JWKS_FIELD_NUMBER: _ClassVar[int]
    CA_BUNDLE_FIELD_NUMBER: _ClassVar[int]
    MAX_LIFETIME_FIELD_NUMBER: _ClassVar[int]
    REUSE_FIELD_NUMBER: _ClassVar[int]
    allow: _containers.RepeatedCompositeFieldContainer[GitLabRule]
    issuer: str
    audience: str
    static_jwks: str
    ca_bundle: str
    max_lifetime: str
    reuse: str
    def __init__(self, allow: _Optional[_Iterable[_Union[GitLabRule, _Mapping]]] = ..., issuer: _Optional[str] = ..., audience: _Optional[str] = ..., static_jwks: _Optional[str] = ..., ca_bundle: _Optional[str] = ..., max_lifetime: _Optional[str] = ..., reuse: _Optional[str] = ...) -> None: ...

class KubernetesRule(_message.Message):
    __slots__ = ("service_account",)
    SERVICE_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    service_account: str
    def __init__(self, service_account: _Optional[str] = ...) -> None: ...

class KubernetesJoin(_message.Message):
    __slots__ = ("type", "allow", "issuer", "audience", "static_jwks", "ca_bundle")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ALLOW_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    STATIC_JWKS_FIELD_NUMBER: _ClassVar[int]
    CA_BUNDLE_FIELD_NUMBER: _ClassVar[int]
    type: str
    allow: _containers.RepeatedCompositeFieldContainer[KubernetesRule]
    issuer: str
    audience: str
    static_jwks: str
    ca_bundle: str
    def __init__(self, type: _Optional[str] = ..., allow: _Optional[_Iterable[_Union[KubernetesRule, _Mapping]]] = ..., issuer: _Optional[str] = ..., audience: _Optional[str] = ..., static_jwks: _Optional[str] = ..., ca_bundle: _Optional[str] = ...) -> None: ...

class ClaimCondition(_message.Message):
    __slots__ = ("claim", "equals", "matches", "any_of")
    CLAIM_FIELD_NUMBER: _ClassVar[int]
    EQUALS_FIELD_NUMBER: _ClassVar[int]
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    ANY_OF_FIELD_NUMBER: _ClassVar[int]
    claim: str
    equals: str
    matches: str
    any_of: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, claim: _Optional[str] = ..., equals: _Optional[str] = ..., matches: _Optional[str] = ..., any_of: _Optional[_Iterable[str]] = ...) -> None: ...

class ClaimRule(_message.Message):
    __slots__ = ("conditions",)
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    conditions: _containers.RepeatedCompositeFieldContainer[ClaimCondition]
    def __init__(self, conditions: _Optional[_Iterable[_Union[ClaimCondition, _Mapping]]] = ...) -> None: ...

class OIDCJoin(_message.Message):
    __slots__ = ("issuer", "audience", "allow", "static_jwks", "ca_bundle", "max_lifetime", "reuse")
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    ALLOW_FIELD_NUMBER: _ClassVar[int]
    STATIC_JWKS_FIELD_NUMBER: _ClassVar[int]
    CA_BUNDLE_FIELD_NUMBER: _ClassVar[int]
    MAX_LIFETIME_FIELD_NUMBER: _ClassVar[int]
    REUSE_FIELD_NUMBER: _ClassVar[int]
    issuer: str
    audience: str
    allow: _containers.RepeatedCompositeFieldContainer[ClaimRule]
    static_jwks: str
    ca_bundle: str
    max_lifetime: str
    reuse: str
    def __init__(self, issuer: _Optional[str] = ..., audience: _Optional[str] = ..., allow: _Optional[_Iterable[_Union[ClaimRule, _Mapping]]] = ..., static_jwks: _Optional[str] = ..., ca_bundle: _Optional[str] = ..., max_lifetime: _Optional[str] = ..., reuse: _Optional[str] = ...) -> None: ...

class ProvisionTokenSpec(_message.Message):
    __slots__ = ("roles", "join_method", "bot_name", "allow", "bound_keypair", "github", "gitlab", "kubernetes", "oidc", "node_name")
    ROLES_FIELD_NUMBER: _ClassVar[int]
    JOIN_METHOD_FIELD_NUMBER: _ClassVar[int]
    BOT_NAME_FIELD_NUMBER: _ClassVar[int]
    ALLOW_FIELD_NUMBER: _ClassVar[int]
    BOUND_KEYPAIR_FIELD_NUMBER: _ClassVar[int]
    GITHUB_FIELD_NUMBER: _ClassVar[int]
    GITLAB_FIELD_NUMBER: _ClassVar[int]
    KUBERNETES_FIELD_NUMBER: _ClassVar[int]
    OIDC_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    roles: _containers.RepeatedScalarFieldContainer[str]
    join_method: str
    bot_name: str
    allow: _containers.RepeatedCompositeFieldContainer[TokenRule]
    bound_keypair: BoundKeypair
    github: GitHubJoin
    gitlab: GitLabJoin
    kubernetes: KubernetesJoin
    oidc: OIDCJoin
    node_name: str
    def __init__(self, roles: _Optional[_Iterable[str]] = ..., join_method: _Optional[str] = ..., bot_name: _Optional[str] = ..., allow: _Optional[_Iterable[_Union[TokenRule, _Mapping]]] = ..., bound_keypair: _Optional[_Union[BoundKeypair, _Mapping]] = ..., github: _Optional[_Union[GitHubJoin, _Mapping]] = ..., gitlab: _Optional[_Union[GitLabJoin, _Mapping]] = ..., kubernetes: _Optional[_Union[KubernetesJoin, _Mapping]] = ..., oidc: _Optional[_Union[OIDCJoin, _Mapping]] = ..., node_name: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("user_name", "role_name", "generation", "instance_id", "locked", "lock_reason", "last_join", "join_token", "spent_tokens", "join_attributes")
    class JoinAttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    USER_NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_NAME_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    LOCKED_FIELD_NUMBER: _ClassVar[int]
    LOCK_REASON_FIELD_NUMBER: _ClassVar[int]
    LAST_JOIN_FIELD_NUMBER: _ClassVar[int]
    JOIN_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SPENT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    JOIN_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    user_name: str
    role_name: str
    generation: int
    instance_id: str
    locked: bool
    lock_reason: str
    last_join: _timestamp_pb2.Timestamp
    join_token: str
    spent_tokens: _containers.RepeatedScalarFieldContainer[str]
    join_attributes: _containers.ScalarMap[str, str]
    def __init__(self, user_name: _Optional[str] = ..., role_name: _Optional[str] = ..., generation: _Optional[int] = ..., instance_id: _Optional[str] = ..., locked: _Optional[bool] = ..., lock_reason: _Optional[str] = ..., last_join: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., join_token: _Optional[str] = ..., spent_tokens: _Optional[_Iterable[str]] = ..., join_attributes: _Optional[_Mapping[str, str]] = ...) -> None: ...

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
    __slots__ = ("addr", "hostnames", "host_cert_ttl", "revocation_max_age")
    ADDR_FIELD_NUMBER: _ClassVar[int]
    HOSTNAMES_FIELD_NUMBER: _ClassVar[int]
    HOST_CERT_TTL_FIELD_NUMBER: _ClassVar[int]
    REVOCATION_MAX_AGE_FIELD_NUMBER: _ClassVar[int]
    addr: str
    hostnames: _containers.RepeatedScalarFieldContainer[str]
    host_cert_ttl: str
    revocation_max_age: str
    def __init__(self, addr: _Optional[str] = ..., hostnames: _Optional[_Iterable[str]] = ..., host_cert_ttl: _Optional[str] = ..., revocation_max_age: _Optional[str] = ...) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("generation", "instance_id", "last_join", "join_token", "spent_tokens", "host_cert_expires", "last_heartbeat", "heartbeat_interval", "version", "reported_addr", "applied_revision", "revocations_version", "locked", "lock_reason")
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_JOIN_FIELD_NUMBER: _ClassVar[int]
    JOIN_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SPENT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    HOST_CERT_EXPIRES_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REPORTED_ADDR_FIELD_NUMBER: _ClassVar[int]
    APPLIED_REVISION_FIELD_NUMBER: _ClassVar[int]
    REVOCATIONS_VERSION_FIELD_NUMBER: _ClassVar[int]
    LOCKED_FIELD_NUMBER: _ClassVar[int]
    LOCK_REASON_FIELD_NUMBER: _ClassVar[int]
    generation: int
    instance_id: str
    last_join: _timestamp_pb2.Timestamp
    join_token: str
    spent_tokens: _containers.RepeatedScalarFieldContainer[str]
    host_cert_expires: _timestamp_pb2.Timestamp
    last_heartbeat: _timestamp_pb2.Timestamp
    heartbeat_interval: str
    version: str
    reported_addr: str
    applied_revision: str
    revocations_version: int
    locked: bool
    lock_reason: str
    def __init__(self, generation: _Optional[int] = ..., instance_id: _Optional[str] = ..., last_join: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., join_token: _Optional[str] = ..., spent_tokens: _Optional[_Iterable[str]] = ..., host_cert_expires: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_heartbeat: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., heartbeat_interval: _Optional[str] = ..., version: _Optional[str] = ..., reported_addr: _Optional[str] = ..., applied_revision: _Optional[str] = ..., revocations_version: _Optional[int] = ..., locked: _Optional[bool] = ..., lock_reason: _Optional[str] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("metadata", "spec", "status")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    metadata: Metadata
    spec: NodeSpec
    status: NodeStatus
    def __init__(self, metadata: _Optional[_Union[Metadata, _Mapping]] = ..., spec: _Optional[_Union[NodeSpec, _Mapping]] = ..., status: _Optional[_Union[NodeStatus, _Mapping]] = ...) -> None: ...

class LockTarget(_message.Message):
    __slots__ = ("bot", "bot_instance", "token", "user", "node")
    BOT_FIELD_NUMBER: _ClassVar[int]
    BOT_INSTANCE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    bot: str
    bot_instance: str
    token: str
    user: str
    node: str
    def __init__(self, bot: _Optional[str] = ..., bot_instance: _Optional[str] = ..., token: _Optional[str] = ..., user: _Optional[str] = ..., node: _Optional[str] = ...) -> None: ...

class LockSpec(_message.Message):
    __slots__ = ("target", "message")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    target: LockTarget
    message: str
    def __init__(self, target: _Optional[_Union[LockTarget, _Mapping]] = ..., message: _Optional[str] = ...) -> None: ...

class Lock(_message.Message):
    __slots__ = ("metadata", "spec")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    metadata: Metadata
    spec: LockSpec
    def __init__(self, metadata: _Optional[_Union[Metadata, _Mapping]] = ..., spec: _Optional[_Union[LockSpec, _Mapping]] = ...) -> None: ...

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

class DestinationHealth(_message.Message):
    __slots__ = ("path", "healthy", "error")
    PATH_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    path: str
    healthy: bool
    error: str
    def __init__(self, path: _Optional[str] = ..., healthy: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class BotInstanceHeartbeat(_message.Message):
    __slots__ = ("version", "hostname", "os", "architecture", "uptime_seconds", "one_shot", "destinations")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    OS_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ONE_SHOT_FIELD_NUMBER: _ClassVar[int]
    DESTINATIONS_FIELD_NUMBER: _ClassVar[int]
    version: str
    hostname: str
    os: str
    architecture: str
    uptime_seconds: int
    one_shot: bool
    destinations: _containers.RepeatedCompositeFieldContainer[DestinationHealth]
    def __init__(self, version: _Optional[str] = ..., hostname: _Optional[str] = ..., os: _Optional[str] = ..., architecture: _Optional[str] = ..., uptime_seconds: _Optional[int] = ..., one_shot: _Optional[bool] = ..., destinations: _Optional[_Iterable[_Union[DestinationHealth, _Mapping]]] = ...) -> None: ...

class BotInstance(_message.Message):
    __slots__ = ("instance_id", "bot_name", "join_method", "join_token", "join_attributes", "renewable", "generation", "first_seen", "last_seen", "last_heartbeat", "heartbeat", "current")
    class JoinAttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    BOT_NAME_FIELD_NUMBER: _ClassVar[int]
    JOIN_METHOD_FIELD_NUMBER: _ClassVar[int]
    JOIN_TOKEN_FIELD_NUMBER: _ClassVar[int]
    JOIN_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    RENEWABLE_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    bot_name: str
    join_method: str
    join_token: str
    join_attributes: _containers.ScalarMap[str, str]
    renewable: bool
    generation: int
    first_seen: _timestamp_pb2.Timestamp
    last_seen: _timestamp_pb2.Timestamp
    last_heartbeat: _timestamp_pb2.Timestamp
    heartbeat: BotInstanceHeartbeat
    current: bool
    def __init__(self, instance_id: _Optional[str] = ..., bot_name: _Optional[str] = ..., join_method: _Optional[str] = ..., join_token: _Optional[str] = ..., join_attributes: _Optional[_Mapping[str, str]] = ..., renewable: _Optional[bool] = ..., generation: _Optional[int] = ..., first_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_heartbeat: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., heartbeat: _Optional[_Union[BotInstanceHeartbeat, _Mapping]] = ..., current: _Optional[bool] = ...) -> None: ...
