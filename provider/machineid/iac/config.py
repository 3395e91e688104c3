"""Provider configuration: where the cluster is and which identity to use (both adapters, same fields)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from machineid.model.errors import FieldViolation, ValidationError
from machineid.model.fields import attr

if TYPE_CHECKING:
    from machineid.api.client import Client
    from machineid.api.identity import Identity


@dataclass
class ProviderConfig:
    # Environment variables that supply a field the configuration leaves empty.
    ENV: ClassVar[dict[str, str]] = {
        "address": "MACHINEID_AUTH_SERVER", "identity_file": "MACHINEID_IDENTITY", "ca_pin": "MACHINEID_CA_PIN",
        "join_method": "MACHINEID_JOIN_METHOD", "join_token": "MACHINEID_JOIN_TOKEN", "audience": "MACHINEID_AUDIENCE",
        "id_token_file": "MACHINEID_ID_TOKEN_FILE", "id_token_env": "MACHINEID_ID_TOKEN_ENV",
        "kubernetes_token_path": "MACHINEID_KUBERNETES_TOKEN_PATH"}

    address: str = attr(default="", doc="host:port of the machineid cluster.")
    identity_file: str = attr(default="", doc="Path of an identity file (from `machineid ctl auth sign`, or the "
                                              "server's admin.identity). Not needed with join_method.")
    identity: str = attr(default="", secret=True, doc="The identity file's content, instead of its path.")
    ca_pin: str = attr(default="", doc="Expected CA pin of the cluster; the provider refuses a cluster whose CA "
                                       "does not match. Required with join_method (checked before anything is "
                                       "sent).")
    join_method: str = attr(default="", doc="Join for each run instead of using an identity file, with what the CI "
                            "gives the job: github (GitHub Actions, `permissions: id-token: write`), gitlab (the "
                            "job's id_tokens variable), kubernetes (the pod's projected token), oidc (an ID token in "
                            "a file) or iam (the machine's AWS role). No secret is stored anywhere: the identity stays "
                            "in the provider's memory.")
    join_token: str = attr(default="", doc="With join_method: the join token's name (not a secret).")
    audience: str = attr(default="", doc="With join_method: the audience the ID token carries (what the token's "
                                         "block asks for); default the cluster's name.")
    id_token_file: str = attr(default="", doc="With join_method: read the ID token from this file (for CIs that "
                                              "write it to disk).")
    id_token_env: str = attr(default="", doc="With join_method gitlab or oidc: the variable that holds the ID token "
                                             "(the name of the job's id_tokens entry); default MACHINEID_ID_TOKEN.")
    kubernetes_token_path: str = attr(default="", doc="With join_method kubernetes: the projected service-account "
                                                      "token; default /var/run/secrets/tokens/machineid.")

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> ProviderConfig:
        """Configured values by field name (missing or None: unset), then the environment defaults (an identity
        from the environment only when no join is configured)."""
        cfg = cls(**{name: str(values[name]) for name in cls.fields() if values.get(name) is not None})
        for name, env in cls.ENV.items():
            if name == "identity_file" and (cfg.identity or cfg.join_method):
                continue
            if not getattr(cfg, name):
                setattr(cfg, name, os.environ.get(env, ""))
        return cfg

    def problems(self, how_to_set: Mapping[str, str]) -> list[FieldViolation]:
        """how_to_set says, per field, how a user of this adapter sets it (the fix named in the message)."""
        from machineid.api.joining import METHODS

        out = []
        if not self.address:
            out.append(FieldViolation(("address",), f"is not set: {how_to_set['address']} or set "
                                                    f"{self.ENV['address']}"))
        elif ":" not in self.address or not self.address.rsplit(":", 1)[1].isdigit():
            out.append(FieldViolation(("address",), f'"{self.address}" is not host:port, e.g. 127.0.0.1:3025'))
        if self.join_method:
            if self.join_method not in METHODS:
                out.append(FieldViolation(("join_method",), f'"{self.join_method}" is not a join method the provider '
                                          f"can use; use one of {', '.join(METHODS)}"))
            if self.identity or self.identity_file:
                where = "identity" if self.identity else "identity_file"
                out.append(FieldViolation((where,), "is set together with join_method: use one or the other"))
            for name in ("join_token", "ca_pin"):
                if not getattr(self, name):
                    out.append(FieldViolation((name,), f"is required with join_method: {how_to_set[name]} (or set "
                                                       f"{self.ENV[name]}); it is not a secret"))
            return out
        if not self.identity_file and not self.identity:
            out.append(FieldViolation(("identity_file",), f"is not set: {how_to_set['identity_file']} (or set "
                                                          f"{self.ENV['identity_file']}, or {how_to_set['identity']}"
                                                          f", or join with {how_to_set['join_method']})"))
        elif self.identity_file and not os.path.isfile(self.identity_file):
            out.append(FieldViolation(("identity_file",), f"{self.identity_file} does not exist; point it at an "
                                      "identity file from `machineid ctl auth sign`"))
        return out

    def client(self, how_to_set: Mapping[str, str]) -> Client:
        from machineid.api.client import Client, check_pin  # cryptography and friends: only when needed
        from machineid.api.identity import Identity

        problems = self.problems(how_to_set)
        if problems:
            raise ValidationError(problems)
        if self.join_method:
            return Client(self.address, self._join())
        try:
            ident = Identity.loads(self.identity, "identity") if self.identity else Identity.load(self.identity_file)
        except ValueError as e:
            where = "identity" if self.identity else "identity_file"
            raise ValidationError([FieldViolation((where,), str(e))]) from None
        if self.ca_pin:
            try:
                check_pin(ident.tls_ca_certs, self.ca_pin)
            except Exception as e:
                raise ValidationError([FieldViolation(("ca_pin",), str(e))]) from None
        return Client(self.address, ident)

    def _join(self) -> Identity:
        """A join for this process: the identity (key included) is kept in memory only."""
        from machineid.api import id_tokens, joining
        from machineid.model.errors import PermissionDeniedError

        source = None if self.join_method == "iam" else id_tokens.IDTokenSource(
            self.join_method, self.audience, self.id_token_file, self.id_token_env, self.kubernetes_token_path)
        try:
            return joining.join(self.address, self.ca_pin, self.join_method, self.join_token, source)
        except PermissionDeniedError as e:
            raise PermissionDeniedError(f"the provider's {self.join_method} join (join_token "
                                        f"{self.join_token!r}) was refused: {e}") from None
