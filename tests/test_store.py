"""The storage contract, run against both backends: SQLite (embedded) and PostgreSQL (a real server), and two
cluster servers sharing one PostgreSQL database."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from machineid.cluster.store.base import AuditFilter, Backend
from machineid.cluster.store.postgres import PostgresBackend
from machineid.cluster.store.sqlite import SQLiteBackend
from machineid.model import errors
from machineid.model.resources import Bot, BotSpec, Metadata
from tests.conftest import ServerProc
from tests.test_cluster_api import join, renew

Factory = Callable[[], Backend]


@pytest.fixture(params=["sqlite", "postgres"])
def open_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    """Opens backends on one store: two opened ones are like two servers sharing it."""
    opened: list[Backend] = []
    if request.param == "sqlite":
        def make() -> Backend:
            opened.append(SQLiteBackend(tmp_path / "cluster.db"))
            return opened[-1]
    else:
        dsn = request.getfixturevalue("pg_database")

        def make() -> Backend:
            opened.append(PostgresBackend(dsn))
            return opened[-1]
    yield make
    for b in opened:
        b.close()


def test_crud_and_revisions(open_backend: Factory) -> None:
    store = open_backend()
    item = store.create("role", "a", {"x": 1})
    assert store.get("role", "a").value == {"x": 1} and store.get("role", "a").revision == item.revision
    with pytest.raises(errors.AlreadyExistsError):
        store.create("role", "a", {})
    updated = store.update("role", "a", {"x": 2}, item.revision)
    assert updated.revision != item.revision and updated.created == item.created
    with pytest.raises(errors.PreconditionError, match="stale"):
        store.update("role", "a", {"x": 3}, item.revision)
    with pytest.raises(errors.PreconditionError):
        store.delete("role", "a", item.revision)
    store.create("role", "b", {})
    assert [i.name for i in store.list("role")] == ["a", "b"]
    store.delete("role", "a", updated.revision)
    with pytest.raises(errors.NotFoundError):
        store.get("role", "a")
    with pytest.raises(errors.NotFoundError):
        store.update("role", "a", {})


def test_pages_follow_the_same_order_as_the_full_list(open_backend: Factory) -> None:
    store = open_backend()
    names = ["b-1", "a.2", "a-1", "B", "a_3", "c@x", "9"]
    for n in names:
        store.create("node", n, {})
    store.create("role", "other-kind", {})
    full = [i.name for i in store.list("node")]
    paged, after = [], ""
    while page := store.list_page("node", after, 3):
        assert len(page) <= 3
        paged += [i.name for i in page]
        after = page[-1].name
    assert paged == full and sorted(paged) == sorted(names)


def test_audit_filters_counts_and_pruning(open_backend: Factory) -> None:
    store = open_backend()
    store.audit("admin", "role.create", "role/a", "ok", {})
    store.audit("bot:ci", "cert.renew", "bot/ci", "ok", {})
    store.audit("anonymous", "bot.join", "token/x", "denied", {})
    middle = datetime.now(UTC)
    store.audit("admin", "bot.create", "bot/ci", "ok", {})
    assert [e.action for e in store.audit_events(0, 10, AuditFilter(action="bot"))] == ["bot.join", "bot.create"]
    assert [e.action for e in store.audit_events(0, 10, AuditFilter(action="bot.join"))] == ["bot.join"]
    assert [e.actor for e in store.audit_events(0, 10, AuditFilter(actor="ci"))] == ["bot:ci"]
    assert [e.action for e in store.audit_events(0, 10, AuditFilter(since=middle))] == ["bot.create"]
    assert store.prune_audit(middle, 2) == 2 and store.prune_audit(middle, 2) == 1
    assert [e.action for e in store.audit_events(0, 10)] == ["bot.create"]
    store.create("iam_challenge", "c1", {})
    store.create("iam_challenge", "c2", {})
    assert store.count("iam_challenge") == 2 and store.count("nothing") == 0


def test_a_bots_tokens_are_found_by_index(open_backend: Factory) -> None:
    store = open_backend()
    for i in range(5):
        store.create("token", f"t{i}", {"spec": {"bot_name": "a" if i % 2 else "b"}})
    store.create("role", "r", {"spec": {"bot_name": "a"}})  # another kind is not a token
    assert [i.name for i in store.list_by_bot("token", "a")] == ["t1", "t3"]
    assert [i.name for i in store.list_by_bot("token", "b")] == ["t0", "t2", "t4"]
    assert store.list_by_bot("token", "nobody") == []


def test_transactions_are_all_or_nothing(open_backend: Factory) -> None:
    store = open_backend()
    with pytest.raises(RuntimeError), store.transaction():
        store.create("role", "x", {})
        with store.transaction():  # nested: part of the same transaction
            store.create("role", "y", {})
        raise RuntimeError("abort")
    assert store.list("role") == []


def test_token_names_are_not_in_messages(open_backend: Factory) -> None:
    store = open_backend()
    with pytest.raises(errors.NotFoundError) as exc:
        store.get("token", "supersecret")
    assert "supersecret" not in str(exc.value) and "sha256:" in str(exc.value)


def test_audit_is_append_only_and_ordered(open_backend: Factory) -> None:
    store = open_backend()
    store.audit("admin", "role.create", "role/a", "ok", {"revision": "1"})
    store.audit("bot:x", "bot.join", "token/sha256:ab", "denied", {"error": "no"})
    events = store.audit_events()
    assert [(e.actor, e.action, e.outcome) for e in events] == [("admin", "role.create", "ok"),
                                                               ("bot:x", "bot.join", "denied")]
    assert events[1].details == {"error": "no"}
    assert store.audit_events(after_id=events[0].id) == events[1:]


def test_two_writers_on_one_store_never_both_win(open_backend: Factory) -> None:
    first, second = open_backend(), open_backend()
    base = first.create("role", "race", {"v": 0})
    results: list[str] = []
    barrier = threading.Barrier(2)

    def write(store: Backend, value: int) -> None:
        barrier.wait()
        try:
            store.update("role", "race", {"v": value}, base.revision)
            results.append("ok")
        except errors.PreconditionError:
            results.append("conflict")

    threads = [threading.Thread(target=write, args=(s, i)) for i, s in enumerate((first, second), 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["conflict", "ok"]


def test_two_servers_share_one_postgres(pg_database: str, tmp_path: Path) -> None:
    """Two `machineid server start` processes on one database: one cluster, one set of CAs, unsealed with the key
    both are given (a server without it refuses to start: the database alone signs nothing)."""
    a = ServerProc(tmp_path / "a", extra_args=("--storage", pg_database))
    a.start()
    keyless = ServerProc(tmp_path / "keyless", extra_args=("--storage", pg_database))
    with pytest.raises(AssertionError, match="the CA keys in the database are sealed, and there is no key"):
        keyless.start()
    b = ServerProc(tmp_path / "b", extra_args=("--storage", pg_database, "--ca-key-file", str(a.data_dir / "ca.key")))
    b.start()
    try:
        with a.admin() as admin_a, b.admin() as admin_b:
            assert admin_a.ping().ca_pins == admin_b.ping().ca_pins
            token = admin_a.create_bot(Bot(metadata=Metadata(name="shared"), spec=BotSpec(roles=["access"]))).token
            assert admin_b.get_bot("shared").spec.roles == ["access"]
        ident = join(b, token)  # joins through server B
        renewed = renew(a, ident)  # renews through server A
        assert renewed.info.generation == 2
        with pytest.raises(errors.PermissionDeniedError, match="locked"):
            renew(b, ident)  # the copied first certificate, at the other server: still caught
    finally:
        assert a.stop() == 0
        assert b.stop() == 0


def test_read_decide_write_transactions_on_one_store_take_turns(open_backend: Factory) -> None:
    """What a renewal does: read a counter, decide, write it back, in one transaction. Two stores (two servers or
    workers) doing it at once must not both read the old value: no increment is lost."""
    first, second = open_backend(), open_backend()
    first.create("counter", "generation", {"n": 0})
    rounds = 40
    barrier = threading.Barrier(2)

    def bump(store: Backend) -> None:
        barrier.wait()
        for _ in range(rounds):
            with store.transaction():
                n = store.get("counter", "generation").value["n"]
                threading.Event().wait(0.001)  # the decision takes a moment: the other store's turn, if it can
                store.update("counter", "generation", {"n": n + 1})

    threads = [threading.Thread(target=bump, args=(s,)) for s in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert first.get("counter", "generation").value["n"] == 2 * rounds
