"""The YAML/JSON document form of a resource, Teleport-style (`kind`, `version`, `metadata`, `spec`): what `ctl get`
prints and `ctl create -f` reads back."""

from __future__ import annotations

from typing import Any

from machineid.model import codec, kinds
from machineid.model.errors import FieldViolation, ValidationError
from machineid.model.resources import KINDS, ProvisionToken, Resource

# The version each kind's documents carry (Teleport's for the kinds it has).
VERSIONS = {k.name: k.doc_version for k in kinds.REGISTRY}


def to_document(obj: Resource, every_field: bool = False) -> dict[str, Any]:
    doc: dict[str, Any] = {"kind": obj.kind, "version": VERSIONS[obj.kind]}
    doc.update(codec.encode(obj, omit_empty=not every_field))
    doc.setdefault("spec", {})
    if isinstance(obj, ProvisionToken) and obj.spec.join_method != "bound_keypair" and not every_field:
        doc["spec"].pop("bound_keypair", None)  # its defaults, which other methods do not take
    return doc


def from_document(doc: Any, index: int) -> Resource:
    where = f"document {index + 1}"
    if not isinstance(doc, dict):
        raise ValidationError(f"{where}: must be a mapping with kind, version, metadata and spec")
    kind = str(doc.get("kind", "")).lower()
    if kind not in KINDS:
        raise ValidationError(f'{where}: kind: "{doc.get("kind", "")}" is not a resource kind; use one of '
                              f'{", ".join(sorted(KINDS))}')
    version = doc.get("version")
    if version not in (None, VERSIONS[kind]):
        raise ValidationError(f'{where}: version: "{version}" is not a version of kind {kind}; use '
                              f"{VERSIONS[kind]} (or leave it out)")
    body = {k: val for k, val in doc.items() if k not in ("kind", "version")}
    body.pop("status", None)  # server-set; ignored on input
    try:
        obj: Resource = codec.decode_and_validate(KINDS[kind], body)
    except ValidationError as e:
        raise ValidationError([FieldViolation((), f"{where} ({kind}): {x}") for x in e.violations]) from None
    return obj
