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


@dataclass
class ProviderConfig:
    # Environment variables that supply a field the configuration leaves empty.
    ENV: ClassVar[dict[str, str]] = {"address": "MACHINEID_AUTH_SERVER", "identity_file": "MACHINEID_IDENTITY"}

    address: str = attr(default="", doc="host:port of the machineid cluster.")
    identity_file: str = attr(default="", doc="Path of an identity file (from `machineid ctl auth sign`, or the "
                                              "server's admin.identity).")
    identity: str = attr(default="", secret=True, doc="The identity file's content, instead of its path.")
    ca_pin: str = attr(default="", doc="Expected CA pin of the cluster; the provider refuses a cluster whose CA "
                                       "does not match.")

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> ProviderConfig:
        """Configured values by field name (missing or None: unset), then the environment defaults."""
        cfg = cls(**{name: str(values[name]) for name in cls.fields() if values.get(name) is not None})
        if not cfg.address:
            cfg.address = os.environ.get(cls.ENV["address"], "")
        if not cfg.identity_file and not cfg.identity:
            cfg.identity_file = os.environ.get(cls.ENV["identity_file"], "")
        return cfg

    def problems(self, how_to_set: Mapping[str, str]) -> list[FieldViolation]:
        """how_to_set says, per field, how a user of this adapter sets it (the fix named in the message)."""
        out = []
        if not self.address:
            out.append(FieldViolation(("address",), f"is not set: {how_to_set['address']} or set "
                                                    f"{self.ENV['address']}"))
        elif ":" not in self.address or not self.address.rsplit(":", 1)[1].isdigit():
            out.append(FieldViolation(("address",), f'"{self.address}" is not host:port, e.g. 127.0.0.1:3025'))
        if not self.identity_file and not self.identity:
            out.append(FieldViolation(("identity_file",), f"is not set: {how_to_set['identity_file']} (or set "
                                                          f"{self.ENV['identity_file']}, or {how_to_set['identity']})"))
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
