"""Bot instance records (model/instances.py): written at each bot join and renewal (inside their transactions),
read by `ctl bots instances` and the providers' data sources, pruned by the janitor a retention after they were
last seen.

Stored as {"spec": <BotInstance>} so the store's index on spec.bot_name (list_by_bot) lists one bot's instances
without a scan. Only authenticated joins and renewals write them: an anonymous caller writes none. A renewal
updates its instance's one row (no row per renewal); a non-renewable join (iam, the delegated methods: a CI job
joins every run) writes one row per join, bounded by the retention.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from machineid.cluster.objects import Objects
from machineid.cluster.store.base import Item
from machineid.model import codec
from machineid.model.errors import NotFoundError
from machineid.model.instances import MAX_DESTINATIONS, BotInstance, Heartbeat

KIND = "bot_instance"
DEFAULT_RETENTION = timedelta(days=7)


def _load(item: Item) -> BotInstance:
    return codec.decode(BotInstance, item.value.get("spec", {}))


def _store(objects: Objects, inst: BotInstance, exists: bool) -> None:
    value = {"spec": codec.encode(inst)}
    if exists:
        objects.backend.update(KIND, inst.instance_id, value)
    else:
        objects.backend.create(KIND, inst.instance_id, value)


def get(objects: Objects, instance_id: str) -> BotInstance | None:
    try:
        return _load(objects.backend.get(KIND, instance_id))
    except NotFoundError:
        return None


def joined(objects: Objects, bot_name: str, method: str, join_token: str, *, instance_id: str = "",
           attributes: dict[str, str] | None = None, renewable: bool = True) -> str:
    """A bot joined: its new instance (instance_id: the bot's new renewable identity's, fresh from the join; a
    non-renewable join gets an ID of its own, which its certificate carries). Returns the instance ID."""
    now = objects.clock()
    inst = BotInstance(instance_id=instance_id or uuid.uuid4().hex, bot_name=bot_name, join_method=method,
                       join_token=join_token, join_attributes=dict(attributes or {}), renewable=renewable,
                       generation=1, first_seen=now, last_seen=now)
    _store(objects, inst, exists=False)  # every join starts a new instance
    return inst.instance_id


def renewed(objects: Objects, bot_name: str, instance_id: str, generation: int, heartbeat: Heartbeat | None) -> None:
    """A renewal of the instance (and the heartbeat it carried, if any). An instance from before the cluster kept
    records gets one now."""
    now = objects.clock()
    inst = get(objects, instance_id)
    exists = inst is not None
    if inst is None:
        inst = BotInstance(instance_id=instance_id, bot_name=bot_name, renewable=True, first_seen=now)
    inst.generation, inst.last_seen = generation, now
    if heartbeat is not None:
        heartbeat.destinations = heartbeat.destinations[:MAX_DESTINATIONS]
        inst.heartbeat, inst.last_heartbeat = heartbeat, now
    _store(objects, inst, exists)


def of_bot(objects: Objects, bot_name: str, current: str) -> list[BotInstance]:
    out = []
    for item in objects.backend.list_by_bot(KIND, bot_name):
        inst = _load(item)
        inst.current = bool(current) and inst.instance_id == current
        out.append(inst)
    return out


def page(objects: Objects, after: str, size: int) -> tuple[list[BotInstance], str]:
    items = objects.backend.list_page(KIND, after, size)
    return [_load(i) for i in items], (items[-1].name if len(items) == size else "")


def prune(objects: Objects, retention: timedelta, now: datetime, batch: int) -> int:
    """Deletes the records last seen longer ago than the retention; returns how many."""
    n, after = 0, ""
    while items := objects.backend.list_page(KIND, after, batch):
        for item in items:
            seen = item.value.get("spec", {}).get("last_seen")
            if seen and codec.parse_time(seen) < now - retention:
                try:
                    objects.backend.delete(KIND, item.name)
                    n += 1
                except NotFoundError:
                    pass
        after = items[-1].name
    return n
