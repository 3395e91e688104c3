"""The API client the provider core uses, served by a cluster in this process (tests/inprocess.py) instead of a
server over gRPC: core tests need no server process, and expiry is tested by moving the cluster's clock.

Objects are copied both ways, as the wire would: the cluster may complete what it is given (a generated token
name, a hashed secret), and the caller must not see that happen to its own object."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from machineid import __version__
from machineid.api.client import BotCreated
from machineid.cluster.kinds import Page
from machineid.cluster.service import Caller, Cluster
from machineid.model.resources import KINDS, Bot, Node, ProvisionToken, Resource, Role, User

T = TypeVar("T")


@dataclass
class Ping:
    cluster_name: str
    server_version: str
    ca_pins: list[str] = field(default_factory=list)


class InProcessClient:
    """machineid.api.client.Client's resource calls, answered by an in-process Cluster for one caller."""

    def __init__(self, cluster: Cluster, caller: Caller, address: str = "127.0.0.1:3025") -> None:
        self.cluster, self.caller, self.address = cluster, caller, address

    def __enter__(self) -> InProcessClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        pass

    def ping(self) -> Ping:
        return Ping(self.cluster.cluster_name, __version__, [self.cluster.authority.pin])

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return copy.deepcopy(getattr(self.cluster, method)(self.caller, *copy.deepcopy(args), **kwargs))

    def upsert(self, obj: Resource, *, create_only: bool = False) -> Resource:
        if isinstance(obj, Bot):
            return self.create_bot(obj).bot if create_only else self.update_bot(obj)
        result: Resource = self._call("upsert", obj, create_only)
        return result

    def get(self, kind: str, name: str) -> Resource:
        result: Resource = self._call("get", KINDS[kind], name)
        return result

    def list(self, kind: str, labels: dict[str, str] | None = None, page_size: int = 0) -> list[Resource]:
        out: list[Resource] = []
        token = ""
        while True:
            items, token = self._call("list_page", KINDS[kind], Page(page_size, token, dict(labels or {})))
            out += items
            if not token:
                return out

    def delete(self, kind: str, name: str, revision: str = "") -> None:
        self._call("delete", KINDS[kind], name, revision)

    def get_role(self, name: str) -> Role:
        return self._typed(Role, self.get("role", name))

    def get_token(self, name: str) -> ProvisionToken:
        return self._typed(ProvisionToken, self.get("token", name))

    def get_bot(self, name: str) -> Bot:
        return self._typed(Bot, self.get("bot", name))

    def get_user(self, name: str) -> User:
        return self._typed(User, self.get("user", name))

    def get_node(self, name: str) -> Node:
        return self._typed(Node, self.get("node", name))

    def create_bot(self, bot: Bot, token_name: str = "", token_ttl: timedelta | None = None) -> BotCreated:
        created, token = self._call("create_bot", bot, token_name, token_ttl)
        return BotCreated(bot=created, token=token.metadata.name, join_method=token.spec.join_method,
                          token_expires=token.metadata.expires, ca_pins=[self.cluster.authority.pin])

    def update_bot(self, bot: Bot) -> Bot:
        return self._typed(Bot, self._call("update_bot", bot))

    @staticmethod
    def _typed(cls: type[T], obj: Any) -> T:
        assert isinstance(obj, cls), obj
        return obj
