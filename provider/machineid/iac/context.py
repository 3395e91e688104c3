"""What a resource handler may use of the provider: a narrow context, so handlers never reach into the core (the
core imports the handlers, never the other way round), and the words each adapter uses for its fixes."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from machineid.iac.resource import ResourceDef

if TYPE_CHECKING:
    from machineid.api.client import Client

Log = Callable[[str, str], None]  # (severity, message)


@dataclass(frozen=True)
class Hints:
    """How a user of one adapter fixes things: the words differ (pulumi config set vs a provider block)."""

    how_to_set: Mapping[str, str]  # provider config field -> how to set it
    role_reference: str  # how to reference a role created in the same program
    import_command: Callable[[ResourceDef, str], str]  # how to adopt an existing object
    # How to have a replacement created before its old object is deleted, where the tool deletes first by default
    # (Terraform); empty where it creates first (Pulumi, unless the name stays the same).
    create_first: str = ""


@dataclass(frozen=True)
class Context:
    """The provider as one call of a handler sees it."""

    client: Callable[[], Client]  # the configured cluster's client (a ValidationError: not configured)
    clock: Callable[[], datetime]
    log: Log
    hints: Hints
    address: str  # the configured cluster address (rendered into agent configs)
    planned_creates: set[tuple[str, str]]  # (kind, name) planned for creation earlier in this run
    deletes: set[tuple[str, str]]  # (kind, name) this process was asked to delete
    stopping: threading.Event  # set when the CLI asks the provider to stop (Ctrl-C): waits end
    in_use_wait: float  # how long a delete waits for users of its object that are being deleted too
    holder_grace: float  # how long it waits for other users of its object

    def import_hint(self, rdef: ResourceDef, name: str) -> str:
        return self.hints.import_command(rdef, name)
