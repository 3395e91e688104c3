"""Joining to an identity held in memory only: how the CLI (`ctl`, `review`) and the providers authenticate in CI
without a stored secret. The job proves who it is with what its platform gives it (an ID token: github, gitlab,
kubernetes, oidc; or its AWS role: iam), the cluster checks it against a join token (whose name is no secret), and
the short-lived certificates it answers with never touch the disk. The cluster is checked against the CA pin (no
secret either) before anything is sent.

bound_keypair is not offered here: its join state must be kept from one join to the next, which takes a data dir
(the agent's, `bot start --oneshot` writing a destination).
"""

from __future__ import annotations

from datetime import timedelta

from machineid.api import certs, id_tokens
from machineid.api.client import JoinClient, check_pin, fetch_cluster_cas, identity_from_certs
from machineid.api.identity import Identity
from machineid.model.delegated import DELEGATED_METHODS
from machineid.model.errors import ValidationError

METHODS = ("iam", *DELEGATED_METHODS)  # what a tool can join with, in memory


def join(address: str, ca_pin: str, join_method: str, token: str, source: id_tokens.IDTokenSource | None = None,
         ttl: timedelta | None = None) -> Identity:
    if join_method not in METHODS:
        raise ValidationError(f"--join-method: {join_method!r} cannot join in memory; use one of {', '.join(METHODS)}"
                              + (" (a bound key pair's join state needs the agent's data dir: bot start --oneshot)"
                                 if join_method == "bound_keypair" else ""))
    if not ca_pin:
        raise ValidationError("--ca-pin: a join needs the cluster's CA pin (it is not a secret)")
    if not token:
        raise ValidationError("--join-token: a join needs the name of the join token (it is not a secret)")
    ca = check_pin(fetch_cluster_cas(address), ca_pin)
    key = certs.new_key()
    public = certs.public_key_pem(key.public_key())
    with JoinClient(address, [ca]) as client:
        if join_method == "iam":
            reply = client.join_with_iam(token, public, ttl)
        else:
            source = source or id_tokens.IDTokenSource.from_environment(join_method)
            id_token = id_tokens.fetch(source, source.audience or client.ping().cluster_name)
            reply = client.register_using_oidc(token, id_token, public, ttl)
    return identity_from_certs(certs.private_key_pem(key), reply.certs)
