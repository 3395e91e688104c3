"""Internal records the cluster keeps beside its objects, never served by any RPC: each a dataclass with its own
backend kind, read and written whole through the typed helpers here, so no code reaches into a stored dict by
string. Their stored JSON is the dataclass's fields, as earlier versions wrote them."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar, Protocol, TypeVar

from machineid.cluster.objects import Objects
from machineid.model import codec
from machineid.model.errors import NotFoundError


class Record(Protocol):
    KIND: ClassVar[str]


T = TypeVar("T", bound=Record)


@dataclass
class LastRenewal:
    """A bot's last renewal (or bound_keypair join), by bot name: a lost answer is issued again for the same key,
    and a bound_keypair join tells from `expires` whether the bot still held valid certificates."""

    KIND: ClassVar[str] = "bot_last_renewal"
    generation: int = 0
    key: str = ""  # digest of the public key certified ("" for a join)
    instance: str = ""  # the bot's instance_id then
    expires: datetime | None = None


@dataclass
class LastKeypairJoin:
    """A bound_keypair token's last join, by token name: a retried join whose answer was lost is recognised, and
    the keys the token was bound to before are remembered (a join signed by one locks the bot)."""

    KIND: ClassVar[str] = "bound_keypair_last_join"
    created: str = ""  # the token's creation time: a token created again under the same name starts over
    seq: int = 0  # the join sequence after that join
    certify: str = ""  # digest of the public key it certified
    instance: str = ""  # the bot's instance_id it started
    signer: str = ""  # the key that signed it (OpenSSH line)
    new_key: str = ""  # the key it bound (registration or rotation), if any
    previous: list[str] = field(default_factory=list)  # keys the token was bound to before, newest first


def get(objects: Objects, cls: type[T], name: str) -> T | None:
    try:
        item = objects.backend.get(cls.KIND, name)
    except NotFoundError:
        return None
    return codec.decode(cls, item.value)


def put(objects: Objects, name: str, record: Record) -> None:
    """Create or replace (inside the caller's transaction)."""
    value = codec.encode(record)
    try:
        objects.backend.update(record.KIND, name, value)
    except NotFoundError:
        objects.backend.create(record.KIND, name, value)


def delete(objects: Objects, cls: type[Record], name: str) -> None:
    with contextlib.suppress(NotFoundError):
        objects.backend.delete(cls.KIND, name)
