"""`ctl create -f` and `ctl edit`: resources written from their documents, each checked before any is written, an
existing one overwritten only with --force or its revision, and --dry-run's field diff."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from machineid.api.client import Client
from machineid.cli.ctl import changes, enrollment
from machineid.cli.ctl.common import emit, exists, kind_ref, shown_name
from machineid.cli.ctl.connection import connect
from machineid.model.documents import from_document, to_document
from machineid.model.errors import AlreadyExistsError, PermissionDeniedError, PreconditionError, ValidationError
from machineid.model.resources import Bot, Resource


def read_documents(source: str, text: str | None = None) -> list[Resource]:
    if text is None:
        try:
            text = sys.stdin.read() if source == "-" else Path(source).read_text()
        except OSError as e:
            raise ValidationError(f"-f: cannot read {source}: {e.strerror}") from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise ValidationError(f"-f: {source} is not valid YAML: {e}") from None
    if not docs:
        raise ValidationError(f"-f: {source} holds no resource")
    return [from_document(d, i) for i, d in enumerate(docs)]  # checks every document before writing any


def cmd_create(args: argparse.Namespace) -> int:
    objs = read_documents(args.file)
    results: list[dict[str, Any]] = []
    with connect(args) as client:
        for obj in objs:
            results.append(_apply(client, obj, args.force, args.dry_run))
    emit(args, "\n".join(r.pop("_text") for r in results), results)
    return 0


def _exists_error(obj: Resource) -> AlreadyExistsError:
    return AlreadyExistsError(f'{obj.kind} "{shown_name(obj)}" already exists; pass --force to overwrite it, or edit '
                              f"the output of `get {obj.kind}/{obj.metadata.name}` (its revision makes the update "
                              "safe)")


def _apply(client: Client, obj: Resource, force: bool, dry_run: bool) -> dict[str, Any]:
    """Creates or updates one resource; the result as JSON, with `_text` for people. Writing what is already
    stored changes nothing (the cluster keeps the revision and writes no audit record): said as "unchanged"."""
    if dry_run:
        return _dry_run(client, obj, force)
    if isinstance(obj, Bot):
        return _apply_bot(client, obj, force)
    may_update = force or bool(obj.metadata.revision)
    before = _readable(client, obj) if may_update else None
    try:
        out = client.upsert(obj, create_only=not may_update)
    except AlreadyExistsError:
        raise _exists_error(obj) from None
    if before is not None:
        created = False
    else:  # not there before, or not readable by this caller: the cluster's timestamps say
        created = out.metadata.created is not None and out.metadata.created == out.metadata.updated
    name = shown_name(obj, out.metadata.name if created and not obj.metadata.name else "")
    if before is not None and out.metadata.revision == before.metadata.revision:
        return _unchanged(obj, out.metadata.revision)
    action = "created" if created else "updated"
    return {"kind": obj.kind, "name": name, "action": action, "revision": out.metadata.revision,
            "_text": f'{obj.kind} "{name}" has been {action} (revision {out.metadata.revision})'}


def _readable(client: Client, obj: Resource) -> Resource | None:
    """The stored object before a write that may update it; None when there is none, or the caller may write but
    not read it."""
    try:
        return exists(client, obj)
    except PermissionDeniedError:
        return None


def _unchanged(obj: Resource, revision: str, dry_run: bool = False) -> dict[str, Any]:
    note = "dry run: nothing was written" if dry_run else f"revision {revision}"
    return {"kind": obj.kind, "name": shown_name(obj), "action": "unchanged", "revision": revision,
            "_text": f'{obj.kind} "{shown_name(obj)}" is unchanged ({note})'}


def _dry_run(client: Client, obj: Resource, force: bool) -> dict[str, Any]:
    """What create -f would do, checked as the write would check it, with the fields an update would change."""
    current = exists(client, obj)
    if current is not None and not (force or obj.metadata.revision):
        raise _exists_error(obj)
    if current is not None and obj.metadata.revision and obj.metadata.revision != current.metadata.revision:
        raise PreconditionError(f'{obj.kind} "{shown_name(obj)}" was changed since revision '
                                f"{obj.metadata.revision}; get it again")
    name = shown_name(obj)
    if current is None:
        return {"kind": obj.kind, "name": name, "action": "would_be_created", "revision": "",
                "_text": f'{obj.kind} "{name}" would be created (dry run: nothing was written)'}
    found = changes.diff(current, changes.as_written(current, obj, datetime.now(UTC)))
    if not found:
        return _unchanged(obj, current.metadata.revision, dry_run=True)
    return {"kind": obj.kind, "name": name, "action": "would_be_updated", "revision": "",
            "changes": [c.data() for c in found],
            "_text": f'{obj.kind} "{name}" would be updated (dry run: nothing was written):\n'
                     + "\n".join(f"  {c.text()}" for c in found)}


def _apply_bot(client: Client, bot: Bot, force: bool) -> dict[str, Any]:
    current = exists(client, bot)
    if current is not None:
        if not (force or bot.metadata.revision):
            raise AlreadyExistsError(f'bot "{bot.metadata.name}" already exists; pass --force to update its roles '
                                     "and traits")
        out = client.update_bot(bot)
        if out.metadata.revision == current.metadata.revision:
            return _unchanged(bot, out.metadata.revision)
        return {"kind": "bot", "name": bot.metadata.name, "action": "updated", "revision": out.metadata.revision,
                "_text": f'bot "{bot.metadata.name}" has been updated (revision {out.metadata.revision})'}
    created = client.create_bot(bot)
    data = enrollment.fields(client, created.bot.metadata.name, created.token, created.join_method,
                        created.token_expires, created.ca_pins)
    return {"kind": "bot", "name": bot.metadata.name, "action": "created", "revision": created.bot.metadata.revision,
            **data, "_text": enrollment.message(client, data)}


def cmd_edit(args: argparse.Namespace) -> int:
    import shlex
    import subprocess
    import tempfile

    kind, name = kind_ref(args.ref)
    if not name:
        raise ValidationError(f'edit: name the resource as KIND/NAME, e.g. "{kind}/example"')
    if kind == "token":
        raise ValidationError("edit: tokens are not edited (a token-method token's name is its secret); create a "
                              "new one with `tokens add` and remove the old one")
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    with connect(args) as client:
        current = client.get(kind, name)
        before = yaml.safe_dump(to_document(current), sort_keys=False)
        with tempfile.TemporaryDirectory(prefix="machineid-edit-") as tmp:
            path = Path(tmp) / f"{kind}-{name}.yaml"
            path.write_text(before)
            if subprocess.run([*shlex.split(editor), str(path)]).returncode != 0:
                raise ValidationError(f"edit: the editor ({editor}) failed; nothing was changed")
            after = path.read_text()
        if after == before:
            emit(args, f"{kind} \"{name}\" is unchanged",
                 {"kind": kind, "name": name, "action": "unchanged", "revision": current.metadata.revision})
            return 0
        objs = read_documents(str(path), after)
        if len(objs) != 1 or objs[0].kind != kind or objs[0].metadata.name != name:
            raise ValidationError(f"edit: the file must still hold {kind}/{name} alone; nothing was changed")
        obj = objs[0]
        obj.metadata.revision = obj.metadata.revision or current.metadata.revision  # safe: fails if changed since
        result = _apply(client, obj, force=False, dry_run=False)
    emit(args, result.pop("_text"), result)
    return 0
