"""Field metadata: the one place a resource field is declared.

`attr(...)` wraps dataclasses.field and stores a FieldSpec in its metadata; the Pulumi schema, the Terraform
schema, the YAML/wire codecs and validation all read it (pulumi-go-provider's struct tags, in Python).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from machineid.model.validators import Validator

FIELD_KEY = "machineid"


@dataclass(frozen=True)
class FieldSpec:
    doc: str
    required: bool = False
    # Never shown in clear text: Pulumi secret, Terraform sensitive, masked in logs.
    secret: bool = False
    # Set by the cluster; not an input.
    computed: bool = False
    # The cluster cannot change it in place: a change means delete and create.
    replace_on_change: bool = False
    validators: tuple[Validator, ...] = ()
    # A string longer than this is refused (0: the codec's bound for every free-form string, MAX_TEXT).
    max_length: int = 0


def attr(
    *,
    doc: str,
    default: Any = dataclasses.MISSING,
    default_factory: Any = dataclasses.MISSING,
    required: bool = False,
    secret: bool = False,
    computed: bool = False,
    replace_on_change: bool = False,
    validators: tuple[Validator, ...] | list[Validator] = (),
    max_length: int = 0,
) -> Any:
    spec = FieldSpec(
        doc=doc,
        required=required,
        secret=secret,
        computed=computed,
        replace_on_change=replace_on_change,
        validators=tuple(validators),
        max_length=max_length,
    )
    if default is dataclasses.MISSING and default_factory is dataclasses.MISSING:
        raise TypeError("every model field needs a default (the zero value when it is required)")
    return dataclasses.field(default=default, default_factory=default_factory, metadata={FIELD_KEY: spec})
