"""Revocations: which SSH user certificates must stop logging in now, not when they expire, and the OpenSSH key
revocation list (KRL, krl.py) nodes give sshd as `RevokedKeys`.

What is revoked, by key id (the certificate's user: `bot-NAME` for a bot) or by serial:
- a locked bot: its key id, for as long as it is locked (every certificate it holds stops at once);
- an unlocked bot, a deleted bot or user: the serials of the SSH certificates issued to it before (they would log
  in again otherwise), each until it expires; new certificates under the same name (a bot joining again after the
  unlock, a user created again under the name) are not affected;
- a user whose metadata.expires passed: its key id, from that time on;
- a role edited or deleted, or a user's or bot's roles changed: the serials of the outstanding certificates of the
  holders concerned whose logins or node access (what the certificate carries) are no longer what the holder's
  roles grant.

Serials come from issuance records: one small record per key id (not per certificate) listing the SSH
certificates still valid (serial, expiry, a digest of the logins and node access they carry), written before a
certificate is handed out and pruned of expired ones at each write (at most MAX_OUTSTANDING per key id).

Delivery: every write that changes revocations bumps a version (a stored counter, so that every server process of
the cluster agrees); nodes send the version they hold and get the KRL only when it changed. The encoded KRL is
cached per version. Revocations that start or end at a time (a user's expiry, a revoked serial whose certificate
expired) move the version on when that time passes: the stored `next_change` says when, so no process serves a
version's list past it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from machineid.cluster import krl
from machineid.cluster.objects import Objects
from machineid.cluster.store.base import Item
from machineid.model import codec, grants
from machineid.model.errors import NotFoundError, PreconditionError
from machineid.model.resources import Bot, Lock, Role, User, bot_user_name

log = logging.getLogger("machineid.cluster.revocations")
ENTRY_KIND = "ssh_revocation"
ISSUED_KIND = "ssh_issued"
STATE_KIND = "ssh_revocations"
STATE_NAME = "state"
MAX_OUTSTANDING = 256  # SSH certificates remembered per key id (a bot renewing every 20 minutes holds about 3)
# Serials revoked at once, at most: 8 bytes each in the KRL, which nodes fetch in one answer (gRPC's 4 MiB). Past
# it a holder's certificates are revoked by key id until the last of them expires (safe, but its new certificates
# are refused until then too).
MAX_SERIALS = 200_000
PAGE = 1000


@dataclass
class Entry:
    """One revocation: a key id or a serial (hex), revoked from `start` (None: at once) until `until` (None: while
    the entry exists)."""

    key_id: str = ""
    serial: str = ""
    reason: str = ""
    start: datetime | None = None
    until: datetime | None = None

    def active(self, now: datetime) -> bool:
        return (self.start is None or self.start <= now) and (self.until is None or now < self.until)


@dataclass
class Issued:
    serial: str = ""  # hex
    not_after: datetime | None = None
    grants: str = ""  # digest of the logins and node access the certificate carries


@dataclass
class Outstanding:
    certs: list[Issued] = field(default_factory=list)


@dataclass
class State:
    version: int = 0
    next_change: datetime | None = None  # when the active set may change by time alone (None: never)


def grants_digest(roles: list[Role], traits: dict[str, list[str]]) -> str:
    """What an SSH certificate grants on nodes: its logins and node access (the rest of it does not log in)."""
    logins = sorted(grants.logins(roles, traits))
    access = grants.node_access(roles, traits).encode()
    return hashlib.sha256(json.dumps(logins).encode() + b"\0" + access).hexdigest()[:32]


def _entry(value: dict[str, object]) -> Entry:
    """An entry as stored (codec.encode of Entry), read without the general decoder: a list of many thousand
    serials is read whole whenever its version changes."""
    start, until = value.get("start"), value.get("until")
    return Entry(key_id=str(value.get("key_id") or ""), serial=str(value.get("serial") or ""),
                 reason=str(value.get("reason") or ""), start=codec.parse_time(start) if start else None,
                 until=codec.parse_time(until) if until else None)


def _key_id_name(key_id: str) -> str:
    return "id:" + key_id


def _serial_name(serial: str) -> str:
    return "serial:" + serial


def _get(objects: Objects, kind: str, name: str) -> Item | None:
    try:
        return objects.backend.get(kind, name)
    except NotFoundError:
        return None


def _put(objects: Objects, kind: str, name: str, value: object) -> None:
    data = codec.encode(value)
    try:
        objects.backend.update(kind, name, data)
    except NotFoundError:
        objects.backend.create(kind, name, data)


def _state(objects: Objects) -> State:
    item = _get(objects, STATE_KIND, STATE_NAME)
    return codec.decode(State, item.value) if item else State()


def _bump(objects: Objects, *times: datetime | None) -> int:
    """A new version (inside the caller's transaction); `times` are when the written entries start or end, so that
    the version moves on again then."""
    now = objects.clock()
    st = _state(objects)
    st.version = max(st.version + 1, int(now.timestamp() * 1000))
    for t in times:
        if t is not None and t > now and (st.next_change is None or t < st.next_change):
            st.next_change = t
    _put(objects, STATE_KIND, STATE_NAME, st)
    return st.version


def _set_entry(objects: Objects, name: str, entry: Entry) -> None:
    item = _get(objects, ENTRY_KIND, name)
    if item is not None and codec.decode(Entry, item.value) == entry:
        return
    _put(objects, ENTRY_KIND, name, entry)
    _bump(objects, entry.start, entry.until)


def _drop_entry(objects: Objects, name: str) -> None:
    try:
        objects.backend.delete(ENTRY_KIND, name)
    except NotFoundError:
        return
    _bump(objects)


# ---------------------------------------------------------------------------------------------- issuance records
def _outstanding(objects: Objects, key_id: str) -> Outstanding:
    item = _get(objects, ISSUED_KIND, key_id)
    return codec.decode(Outstanding, item.value) if item else Outstanding()


def record_issued(objects: Objects, key_id: str, serial: int, not_after: datetime, digest: str) -> None:
    """Remembers an SSH certificate before it is handed out, so that it can be revoked by serial later."""
    now = objects.clock()
    with objects.backend.transaction():
        out = _outstanding(objects, key_id)
        certs = [c for c in out.certs if c.not_after is not None and c.not_after > now]
        certs.append(Issued(f"{serial:016x}", not_after, digest))
        if len(certs) > MAX_OUTSTANDING:
            certs.sort(key=lambda c: c.not_after or now)
            log.warning("%s holds more than %d unexpired SSH certificates; the %d expiring first are no longer "
                        "remembered (a revocation by serial misses them)", key_id, MAX_OUTSTANDING,
                        len(certs) - MAX_OUTSTANDING)
            certs = certs[-MAX_OUTSTANDING:]
        _put(objects, ISSUED_KIND, key_id, Outstanding(certs))


def _revoke_serials(objects: Objects, key_id: str, certs: list[Issued], reason: str) -> int:
    now = objects.clock()
    live = [c for c in certs if c.not_after is not None and c.not_after > now]
    if not live:
        return 0
    if objects.backend.count(ENTRY_KIND) + len(live) > MAX_SERIALS:
        last = max(c.not_after for c in live if c.not_after is not None)
        log.warning("more than %d serials revoked: revoking %s by key id until %s instead", MAX_SERIALS, key_id,
                    codec.format_time(last))
        current = _get(objects, ENTRY_KIND, _key_id_name(key_id))
        if current is None or codec.decode(Entry, current.value).until is not None:
            _set_entry(objects, _key_id_name(key_id), Entry(key_id=key_id, reason=reason, until=last))
        return len(live)
    for c in live:
        name = _serial_name(c.serial)
        if _get(objects, ENTRY_KIND, name) is None:
            objects.backend.create(ENTRY_KIND, name, codec.encode(Entry(serial=c.serial, reason=reason,
                                                                        until=c.not_after)))
    _bump(objects, *(c.not_after for c in live))
    return len(live)


def revoke_issued(objects: Objects, key_id: str, reason: str) -> int:
    """Revokes by serial every certificate issued to key_id so far (inside the caller's transaction); new ones are
    not affected. Returns how many."""
    out = _outstanding(objects, key_id)
    n = _revoke_serials(objects, key_id, out.certs, reason)
    with contextlib.suppress(NotFoundError):
        objects.backend.delete(ISSUED_KIND, key_id)
    return n


# ---------------------------------------------------------------------------------------------- what revokes
def locked(objects: Objects, key_id: str, reason: str = "locked") -> None:
    """A holder was locked: everything it holds stops now (inside the caller's transaction)."""
    _set_entry(objects, _key_id_name(key_id), Entry(key_id=key_id, reason=reason))


def unlocked(objects: Objects, key_id: str) -> None:
    """A holder was unlocked: what it held before stays revoked (by serial, until it expires); what it gets after
    joining again logs in."""
    revoke_issued(objects, key_id, "issued before an unlock")
    _drop_entry(objects, _key_id_name(key_id))


def gone(objects: Objects, key_id: str) -> None:
    """A bot or user was deleted: its certificates stop now; the name may be used again at once."""
    revoke_issued(objects, key_id, "holder deleted")
    _drop_entry(objects, _key_id_name(key_id))


def _lock_entry_name(lock_name: str) -> str:
    return "lock:" + lock_name


def lock_written(objects: Objects, lock: Lock) -> None:
    """A lock (locks.py) was created or changed (inside the caller's transaction). A lock on a bot or a user
    revokes its key id while the lock is in force (until metadata.expires). A lock on a bot instance or a join
    token revokes by serial the SSH certificates of the bots whose current identity it stops (a bot holds one
    renewable identity at a time, so its outstanding certificates are that instance's, or older); what they get
    after joining again is not affected. A node lock revokes no user certificate."""
    t = lock.spec.target
    key_id = bot_user_name(t.bot) if t.bot else t.user
    name = _lock_entry_name(lock.metadata.name)
    if key_id:
        _set_entry(objects, name, Entry(key_id=key_id, reason=f"lock {lock.metadata.name}",
                                        until=lock.metadata.expires))
        return
    _drop_entry(objects, name)
    if t.bot_instance or t.token:
        for item in objects.backend.list(Bot.kind):
            status = item.value.get("status") or {}
            if (t.bot_instance and status.get("instance_id") == t.bot_instance) or \
                    (t.token and status.get("join_token") == t.token):
                revoke_issued(objects, bot_user_name(item.name), f"lock {lock.metadata.name}")


def lock_removed(objects: Objects, lock_name: str) -> None:
    """A lock was deleted: its key id is no longer revoked (serials it revoked stay, until they expire)."""
    _drop_entry(objects, _lock_entry_name(lock_name))


def user_written(objects: Objects, user: User, roles_of: Callable[[list[str]], list[Role]]) -> None:
    """A user (or a bot's user) was created or changed (inside the caller's transaction): its expiry is revoked
    from that time on, and its outstanding certificates that grant what its roles no longer do are revoked."""
    key_id = user.metadata.name
    name = _key_id_name(key_id)
    current = _get(objects, ENTRY_KIND, name)
    entry = codec.decode(Entry, current.value) if current else None
    if entry is None or entry.reason == "expired":  # a lock (or an overflow) stays as it is
        if user.metadata.expires is not None:
            _set_entry(objects, name, Entry(key_id=key_id, reason="expired", start=user.metadata.expires))
        elif entry is not None:
            _drop_entry(objects, name)
    _recheck(objects, user, roles_of, "roles changed")


def _recheck(objects: Objects, user: User, roles_of: Callable[[list[str]], list[Role]], reason: str) -> int:
    out = _outstanding(objects, user.metadata.name)
    if not out.certs:
        return 0
    digest = grants_digest(roles_of(list(user.spec.roles)), user.spec.traits)
    stale = [c for c in out.certs if c.grants != digest]
    if not stale:
        return 0
    n = _revoke_serials(objects, user.metadata.name, stale, reason)
    _put(objects, ISSUED_KIND, user.metadata.name, Outstanding([c for c in out.certs if c.grants == digest]))
    return n


def role_changed(objects: Objects, role_name: str, roles_of: Callable[[list[str]], list[Role]]) -> int:
    """A role was edited or deleted (inside the caller's transaction): the outstanding certificates of its holders
    that no longer match what their roles grant are revoked. Returns how many."""
    n, after = 0, ""
    while page := objects.backend.list_page("user", after, PAGE):
        for item in page:
            spec = item.value.get("spec")
            if not isinstance(spec, dict) or role_name not in spec.get("roles", ()):
                continue  # not a holder: not decoded (a fleet's role edit reads every user)
            user = objects.load(User, item)
            if role_name in user.spec.roles:
                n += _recheck(objects, user, roles_of, f"role {role_name} changed")
        after = page[-1].name
    return n


# ---------------------------------------------------------------------------------------------- the list
@dataclass(frozen=True)
class KRL:
    version: int
    data: bytes


class Revocations:
    """The KRL nodes fetch, encoded once per version (per process)."""

    def __init__(self, objects: Objects, user_ca_line: str) -> None:
        self.objects = objects
        self.user_ca_line = user_ca_line
        self._lock = threading.Lock()
        self._cached: KRL | None = None
        self.encodes = 0  # how many times a list was worked out (tests: no work when nothing changed)

    def current(self) -> KRL:
        objects = self.objects
        now = objects.clock()
        st = _state(objects)
        if st.next_change is not None and st.next_change <= now:
            st = self._advance()
        if st.version == 0:  # nothing was ever revoked: a version all the same, so nodes write a list once
            with objects.backend.transaction():
                st = _state(objects)
                if st.version == 0:
                    _bump(objects)
                st = _state(objects)
        with self._lock:
            cached = self._cached
            if cached is not None and cached.version == st.version:
                return cached
            serials, key_ids = self._active(now)
            data = krl.encode(self.user_ca_line, serials, key_ids, version=st.version,
                              generated=int(now.timestamp()), comment="machineid")
            self.encodes += 1
            self._cached = KRL(st.version, data)
            return self._cached

    def _advance(self) -> State:
        """Time changed what is revoked (a user expired, a revoked certificate expired): a new version, and when
        the next such change is."""
        objects = self.objects
        with objects.backend.transaction():
            now = objects.clock()
            st = _state(objects)
            if st.next_change is not None and st.next_change <= now:
                st.version = max(st.version + 1, int(now.timestamp() * 1000))
                st.next_change = None
                for entry in self._entries():
                    for t in (entry.start, entry.until):
                        if t is not None and t > now and (st.next_change is None or t < st.next_change):
                            st.next_change = t
                _put(objects, STATE_KIND, STATE_NAME, st)
            return st

    def _entries(self) -> list[Entry]:
        out: list[Entry] = []
        after = ""
        while page := self.objects.backend.list_page(ENTRY_KIND, after, PAGE * 10):
            out.extend(_entry(item.value) for item in page)
            after = page[-1].name
        return out

    def _active(self, now: datetime) -> tuple[list[int], list[str]]:
        serials: list[int] = []
        key_ids: list[str] = []
        for entry in self._entries():
            if not entry.active(now):
                continue
            if entry.serial:
                serials.append(int(entry.serial, 16))
            elif entry.key_id:
                key_ids.append(entry.key_id)
        return serials, key_ids


def prune(objects: Objects, batch: int) -> int:
    """Deletes revocations that ended and issuance records whose certificates all expired (the janitor's job);
    neither changes what is revoked now. Returns how many."""
    now, n = objects.clock(), 0
    for kind in (ENTRY_KIND, ISSUED_KIND):
        after = ""
        while page := objects.backend.list_page(kind, after, batch):
            for item in page:
                if kind == ENTRY_KIND:
                    until = codec.decode(Entry, item.value).until
                    done = until is not None and until <= now
                else:
                    done = all(c.not_after is None or c.not_after <= now
                               for c in codec.decode(Outstanding, item.value).certs)
                if done:
                    with contextlib.suppress(NotFoundError, PreconditionError):  # written meanwhile: kept
                        objects.backend.delete(kind, item.name, item.revision)
                        n += 1
            after = page[-1].name
    return n
