"""Provider configuration: where the cluster is and which identity to use."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from machineid.model.errors import FieldViolation, ValidationError
from machineid.model.fields import attr
from machineid.pulumi.resources import camel

if TYPE_CHECKING:
    from machineid.api.client import Client


@dataclass
class ProviderConfig:
    ENV: ClassVar[dict[str, str]] = {"address": "MACHINEID_AUTH_SERVER", "identity_file": "MACHINEID_IDENTITY"}

    address: str = attr(default="", doc="host:port of the machineid cluster.")
    identity_file: str = attr(default="", doc="Path of an identity file (from `machineid ctl auth sign`, or the "
                                              "server's admin.identity).")
    identity: str = attr(default="", secret=True, doc="The identity file's content, instead of identityFile.")
    ca_pin: str = attr(default="", doc="Expected CA pin of the cluster; the provider refuses a cluster whose CA "
                                       "does not match.")

    @classmethod
    def from_inputs(cls, values: dict[str, Any]) -> ProviderConfig:
        def get(key: str) -> str:
            raw = values.get(key, values.get(f"machineid:config:{key}", ""))
            return str(raw) if raw is not None else ""

        cfg = cls(**{f.name: get(camel(f.name)) for f in dataclasses.fields(cls)})
        if not cfg.address:
            cfg.address = os.environ.get(cls.ENV["address"], "")
        if not cfg.identity_file and not cfg.identity:
            cfg.identity_file = os.environ.get(cls.ENV["identity_file"], "")
        return cfg

    def problems(self) -> list[FieldViolation]:
        out = []
        if not self.address:
            out.append(FieldViolation(("address",), "is not set: run `pulumi config set machineid:address HOST:PORT` "
                                      "or set MACHINEID_AUTH_SERVER"))
        elif ":" not in self.address or not self.address.rsplit(":", 1)[1].isdigit():
            out.append(FieldViolation(("address",), f'"{self.address}" is not host:port, e.g. 127.0.0.1:3025'))
        if not self.identity_file and not self.identity:
            out.append(FieldViolation(("identityFile",), "is not set: run `pulumi config set machineid:identityFile "
                                      "PATH` (or set MACHINEID_IDENTITY, or machineid:identity as a secret)"))
        elif self.identity_file and not os.path.isfile(self.identity_file):
            out.append(FieldViolation(("identityFile",), f"{self.identity_file} does not exist; point it at an "
                                      "identity file from `machineid ctl auth sign`"))
        return out

    def client(self) -> Client:
        from machineid.api.client import Client, check_pin  # cryptography and friends: only when needed
        from machineid.api.identity import Identity

        problems = self.problems()
        if problems:
            raise ValidationError(problems)
        try:
            ident = Identity.loads(self.identity, "identity") if self.identity else Identity.load(self.identity_file)
        except ValueError as e:
            where = "identity" if self.identity else "identityFile"
            raise ValidationError([FieldViolation((where,), str(e))]) from None
        if self.ca_pin:
            try:
                check_pin(ident.tls_ca_certs, self.ca_pin)
            except Exception as e:
                raise ValidationError([FieldViolation(("caPin",), str(e))]) from None
        return Client(self.address, ident)
