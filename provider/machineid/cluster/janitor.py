"""Housekeeping that keeps the database bounded at fleet scale: audit records past the retention period, expired
join tokens, the records of spent join challenges and ID tokens once those expired, and revocations that ended
and issuance records of expired SSH certificates (revocations.py) are deleted a batch at a
time, each batch its own short transaction, so the server keeps answering while thousands of rows go (one big
DELETE held the store for seconds)."""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from datetime import timedelta

from machineid.cluster import instances, revocations
from machineid.cluster.caller import Caller, token_ref
from machineid.cluster.challenges import LEGACY_KIND, SPENT_KIND
from machineid.cluster.delegated_joins import SPENT_KIND as SPENT_ID_TOKEN_KIND
from machineid.cluster.objects import Objects
from machineid.model import codec
from machineid.model.errors import MachineIDError, NotFoundError, PreconditionError
from machineid.model.resources import ProvisionToken

log = logging.getLogger("machineid.cluster.janitor")
DEFAULT_AUDIT_RETENTION = timedelta(days=90)
BATCH = 2000
JANITOR = Caller(user="janitor")


@dataclass
class Swept:
    audit: int = 0
    tokens: int = 0
    challenges: int = 0
    revocations: int = 0
    instances: int = 0


class Janitor:
    def __init__(self, objects: Objects, audit_retention: timedelta | None = DEFAULT_AUDIT_RETENTION,
                 interval: timedelta = timedelta(minutes=10),
                 instance_retention: timedelta = instances.DEFAULT_RETENTION) -> None:
        self.objects = objects
        self.audit_retention = audit_retention  # None keeps the audit log forever
        self.instance_retention = instance_retention
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep(self) -> Swept:
        out = Swept()
        backend, now = self.objects.backend, self.objects.clock()
        if self.audit_retention is not None:
            while (n := backend.prune_audit(now - self.audit_retention, BATCH)) > 0:
                out.audit += n
                if n < BATCH:
                    break
        after = ""
        while page := backend.list_page(ProvisionToken.kind, after, BATCH):
            for item in page:
                token = self.objects.load(ProvisionToken, item)
                if self.objects.expired(token):
                    with contextlib.suppress(NotFoundError, PreconditionError):
                        backend.delete("token", item.name, item.revision)  # unless it was just extended
                        out.tokens += 1
                        self.objects.audit(JANITOR, "token.expire", f"token/{token_ref(token)}")
            after = page[-1].name
        for kind in (SPENT_KIND, LEGACY_KIND, SPENT_ID_TOKEN_KIND):
            after = ""
            while page := backend.list_page(kind, after, BATCH):
                for item in page:
                    if codec.parse_time(item.value["expires"]) <= now:
                        with contextlib.suppress(NotFoundError):
                            backend.delete(kind, item.name)
                            out.challenges += 1
                after = page[-1].name
        out.revocations = revocations.prune(self.objects, BATCH)
        out.instances = instances.prune(self.objects, self.instance_retention, now, BATCH)
        self.objects.flush_denials()
        if out.audit or out.tokens or out.challenges or out.revocations or out.instances:
            log.info("janitor: deleted %d audit records past retention, %d expired tokens, %d records of expired "
                     "join challenges, %d ended revocations and issuance records, %d bot instances not seen within "
                     "the retention", out.audit, out.tokens, out.challenges, out.revocations, out.instances)
        return out

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="janitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sweep()
            except MachineIDError as e:
                log.warning("janitor: %s; trying again in %s", e, self.interval)
            except Exception:  # a housekeeping bug must not take the server down
                log.exception("janitor failed; trying again in %s", self.interval)
            self._stop.wait(self.interval.total_seconds())
