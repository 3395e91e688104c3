"""`ctl lock` and `ctl unlock` (tctl lock): stop a bot, one bot instance, a join token, a user or a node at once,
with a reason and an optional expiry; lift it by the lock's name or by its target. Locks are objects like any
other (`ctl get locks`, `ctl rm lock/NAME`, Pulumi `Lock`, Terraform `machineid_lock`)."""

from __future__ import annotations

import argparse
import uuid
from datetime import UTC, datetime

from machineid.cli.ctl.common import OUTPUTS, emit, format_flag, parse_ttl
from machineid.cli.ctl.connection import connect
from machineid.cli.fmt import lock_target
from machineid.model import codec
from machineid.model.errors import NotFoundError, ValidationError
from machineid.model.resources import Lock, LockSpec, LockTarget, Metadata

TARGET_FLAGS = ("bot", "bot_instance", "token", "user", "node")


def _target_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("target (exactly one)")
    g.add_argument("--bot", default="", help="every identity of this bot")
    g.add_argument("--bot-instance", default="", metavar="ID",
                   help="one instance of a bot: its instance ID (`ctl get bot NAME`: status.instance_id)")
    g.add_argument("--token", default="", help="a join token: its name, or a single-use token's ID token-... "
                                               "(status.join_token of the bots that joined with it)")
    g.add_argument("--user", default="", help="a user, or a bot's user bot-NAME")
    g.add_argument("--node", default="", help="a node")


def add_parsers(csub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    lock = csub.add_parser("lock", help="lock a bot, a bot instance, a join token, a user or a node now",
                           description="Stop every authenticated call, renewal and join of the target at once (and "
                                       "its SSH certificates on nodes at their next sync), until the lock expires "
                                       "or is removed.",
                           epilog="examples:\n"
                                  "  machineid ctl lock --bot deployer --message 'key leaked in CI log' --ttl 24h\n"
                                  "  machineid ctl lock --bot-instance 3f2a... --message 'host compromised'\n"
                                  "  machineid ctl unlock --bot deployer")
    _target_flags(lock)
    lock.add_argument("--message", default="", help="why: shown to whoever the lock refuses, and audited")
    lock.add_argument("--ttl", default="", help="how long the lock lasts, e.g. 24h (default: until removed)")
    lock.add_argument("--name", default="", help="the lock's name (default: a generated one)")
    format_flag(lock, OUTPUTS)
    lock.set_defaults(func=cmd_lock)
    unlock = csub.add_parser("unlock", help="remove a lock, by its name or by its target",
                             epilog="examples:\n  machineid ctl unlock 6c1e...\n  machineid ctl unlock --bot deployer")
    unlock.add_argument("name", nargs="?", default="", help="the lock's name (`ctl get locks`)")
    _target_flags(unlock)
    format_flag(unlock, OUTPUTS)
    unlock.set_defaults(func=cmd_unlock)


def _target(args: argparse.Namespace) -> LockTarget:
    return LockTarget(**{f: getattr(args, f) for f in TARGET_FLAGS})


def cmd_lock(args: argparse.Namespace) -> int:
    ttl = parse_ttl(args.ttl, "--ttl")
    meta = Metadata(name=args.name or uuid.uuid4().hex,
                    expires=datetime.now(UTC) + ttl if ttl is not None else None)
    lock = Lock(metadata=meta, spec=LockSpec(target=_target(args), message=args.message))
    codec.validate(lock)
    with connect(args) as client:
        out = client.upsert(lock, create_only=True)
    assert isinstance(out, Lock)
    until = f"until {codec.format_time(out.metadata.expires)}" if out.metadata.expires else "until it is removed"
    emit(args, f'lock "{out.metadata.name}" on {lock_target(out)} is in force {until}; lift it with `machineid ctl '
               f"unlock {out.metadata.name}`",
         {"kind": "lock", "name": out.metadata.name, "action": "created", "revision": out.metadata.revision,
          "target": {k: v for k, v in codec.encode(out.spec.target).items() if v},
          "expires": codec.format_time(out.metadata.expires) if out.metadata.expires else None})
    return 0


def cmd_unlock(args: argparse.Namespace) -> int:
    target = _target(args)
    wanted = [f for f in TARGET_FLAGS if getattr(target, f)]
    if bool(args.name) == bool(wanted) or len(wanted) > 1:
        raise ValidationError("unlock: name the lock (`ctl get locks`) or give one target flag (--bot, "
                              "--bot-instance, --token, --user, --node), not both")
    with connect(args) as client:
        if args.name:
            locks = [client.get_as(Lock, args.name)]
        else:
            locks = [lk for lk in client.list_as(Lock) if lk.spec.target == target]
            if not locks:
                raise NotFoundError(f"no lock on {wanted[0]}={getattr(target, wanted[0])}; `machineid ctl get locks` "
                                    "lists them")
        for lk in locks:
            client.delete("lock", lk.metadata.name, lk.metadata.revision)
    names = [lk.metadata.name for lk in locks]
    emit(args, "\n".join(f'lock "{lk.metadata.name}" on {lock_target(lk)} has been removed' for lk in locks),
         {"kind": "lock", "names": names, "action": "deleted"})
    return 0
