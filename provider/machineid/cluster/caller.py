"""Who is calling: the verified client certificate's user and roles, or nobody (ping and joins)."""

from __future__ import annotations

from dataclasses import dataclass, field

from machineid.api import certs
from machineid.model.resources import ProvisionToken, Resource, token_id


@dataclass
class Caller:
    user: str = ""
    roles: list[str] = field(default_factory=list)
    ident: certs.CertIdentity | None = None

    @property
    def anonymous(self) -> bool:
        return self.ident is None

    @property
    def actor(self) -> str:
        if self.ident is None:
            return self.user or "anonymous"  # the server's own housekeeping has a name but no certificate
        if self.ident.node_name:
            return certs.node_user(self.ident.node_name)
        return f"bot:{self.ident.bot_name}" if self.ident.bot_name else self.user


ANONYMOUS = Caller()


def token_ref(token: ProvisionToken | str, join_method: str = "token") -> str:
    """How audit records and logs name a token: secret names only by a hash prefix."""
    if isinstance(token, ProvisionToken):
        name, join_method = token.metadata.name, token.spec.join_method
    else:
        name = token
    # Not secrets (iam, bound_keypair) in clear; a single-use token by the hash the providers use as its ID and
    # its bot records as its last join token, so the three can be matched.
    return token_id(name, join_method)


def target(obj: Resource) -> str:
    """How audit records and messages name an object (a secret token by its hash prefix)."""
    if isinstance(obj, ProvisionToken):
        return f"token/{token_ref(obj)}"
    return f"{obj.kind}/{obj.metadata.name}"
