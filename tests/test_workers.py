"""`machineid server start --workers N`: the server's worker processes share one port and one store, and what a
process kept for itself still holds for the server: locks apply at once in every worker, the bound on audit
records written for anonymous callers is the server's, a worker that dies is replaced while the others answer, and
workers do not outlive the server. (The cluster test modules marked `workers(1, 2)` run against two workers too:
renewal races, metrics, limits.)"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from machineid.api import certs
from machineid.api.client import JoinClient, fetch_cluster_cas
from machineid.cluster.limits import SharedRateLimits
from machineid.cluster.locks import REFRESH_SECONDS
from machineid.cluster.objects import DENIALS_PER_WINDOW
from machineid.cluster.process import ServerProcess
from machineid.model import errors
from machineid.model.resources import Lock, LockSpec, LockTarget, Metadata
from tests.conftest import ServerProc
from tests.test_cluster_api import join, new_bot, race, renew
from tests.test_join_limits import Relay


@pytest.fixture()
def two(tmp_path: Path) -> ServerProc:
    srv = ServerProc(tmp_path / "data", workers=2)
    srv.start()
    yield srv  # type: ignore[misc]
    if srv.proc is not None:
        srv.stop()


def info(srv: ServerProcess) -> dict[str, object]:
    data: dict[str, object] = json.loads((srv.data_dir / "server.json").read_text())
    return data


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by a parent that is gone too) is not alive.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_a_lock_applies_at_once_in_every_worker(two: ServerProc) -> None:
    """Each worker caches the locks for REFRESH_SECONDS; the one that writes a lock tells the others (a shared
    stamp). The check counts only when it is over within that time of the workers' last reads (else their caches
    would have expired anyway): tried again if the machine was too slow."""
    for attempt in range(5):
        name = f"racer-{attempt}"
        with two.admin() as admin:
            token = new_bot(admin, name, ["access"])
        ident = join(two, token)
        warmed = time.monotonic()
        for _ in range(2):  # one connection each, one to each worker: each reads the locks now
            ident = renew(two, ident)
        with two.admin() as admin:
            admin.upsert(Lock(metadata=Metadata(name=f"stop-{name}"),
                              spec=LockSpec(target=LockTarget(bot=name), message="incident 7")))
        for _ in range(2):  # the next two connections: one to each worker
            with pytest.raises(errors.PermissionDeniedError, match="incident 7"):
                renew(two, ident)
        if time.monotonic() - warmed < REFRESH_SECONDS:
            return
    pytest.fail(f"never within {REFRESH_SECONDS}s of the workers' reads: the machine is too busy to tell")


def test_the_audit_bound_for_anonymous_callers_is_the_servers_not_each_workers(two: ServerProc) -> None:
    """Failed joins from many addresses land on both workers; past DENIALS_PER_WINDOW in the window they are only
    counted (one summary record per action later), however many workers wrote."""
    relays = [Relay(two.address, f"127.0.0.{i}") for i in range(2, 10)]
    cas = fetch_cluster_cas(two.address)
    pub = certs.public_key_pem(certs.new_key().public_key())
    attempts = DENIALS_PER_WINDOW + 40
    try:
        for i in range(attempts):
            with JoinClient(relays[i % len(relays)].address, cas) as jc, pytest.raises(errors.MachineIDError):
                jc.register_using_token(f"not-a-token-{i}", pub)
    finally:
        for r in relays:
            r.close()
    with two.admin() as admin:
        events = admin.audit_events(limit=10000)
    written = [e for e in events if e.action == "bot.join" and e.outcome == "denied" and e.target != "*"]
    assert DENIALS_PER_WINDOW // 2 <= len(written) <= DENIALS_PER_WINDOW, len(written)


def test_a_worker_that_dies_is_replaced_and_the_others_answer_meanwhile(two: ServerProc) -> None:
    pids = info(two)["worker_pids"]
    assert isinstance(pids, list) and len(pids) == 2
    os.kill(int(pids[0]), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while alive(int(pids[0])):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    for _ in range(6):  # a connection each, while the worker is down: the dead one is passed over
        with two.admin() as admin:
            assert admin.get_role("access").metadata.name == "access"
    deadline = time.monotonic() + 30
    while pids[0] in (announced := info(two)["worker_pids"]):  # type: ignore[operator]
        assert time.monotonic() < deadline, two.log_text()
        time.sleep(0.1)
    assert "starting another" in two.log_text()  # server.json names the replacement
    assert isinstance(announced, list) and len(announced) == 2 and pids[1] in announced
    assert all(alive(int(p)) for p in announced)
    with two.admin() as admin:
        for _ in range(4):
            assert admin.get_role("access").metadata.name == "access"
    assert two.stop() == 0, two.log_text()
    assert not any(alive(int(p)) for p in announced)


def test_workers_do_not_outlive_a_server_that_was_killed(tmp_path: Path) -> None:
    srv = ServerProc(tmp_path / "data", workers=2)
    srv.start()
    assert srv.proc is not None
    pids = [int(p) for p in info(srv)["worker_pids"]]  # type: ignore[attr-defined]
    srv.proc.kill()
    srv.proc.wait()
    deadline = time.monotonic() + 15
    while any(alive(p) for p in pids):
        assert time.monotonic() < deadline, "a worker outlived its server"
        time.sleep(0.1)
    again = ServerProc(tmp_path / "data", workers=2)  # and the data dir is free for the next server
    again.start()
    assert again.stop() == 0, again.log_text()


def test_the_default_is_a_worker_per_core(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "data", "test.example")  # no --workers
    srv.start()
    try:
        cores = len(os.sched_getaffinity(0))
        assert info(srv)["workers"] == cores and len(info(srv)["worker_pids"]) == (cores if cores > 1 else 0)  # type: ignore[arg-type]
        with srv.admin() as admin:
            assert admin.get_role("editor").metadata.name == "editor"
    finally:
        assert srv.stop() == 0, srv.log_text()


def test_the_workers_limit_an_addresses_anonymous_calls_together(tmp_path: Path) -> None:
    """Ping and the joins are served on authenticated connections too, and connections go to any worker: the
    workers keep the address's buckets together (a shared file), so an address gets the server's burst once, not
    once per worker or per listener."""
    srv = ServerProc(tmp_path / "data", workers=2, extra_args=("--join-rate-per-source", "1"))
    srv.start()
    try:
        allowed = 0
        with srv.admin() as admin, pytest.raises(errors.MachineIDError, match="too many"):  # one connection
            for _ in range(500):
                admin.ping()
                allowed += 1
        burst = 200  # the least burst (router.JOIN_BURST)
        assert burst - 5 <= allowed <= burst + 5, allowed
        for _ in range(2):  # new connections, to the other worker too: the bucket is still empty
            with srv.admin() as admin, pytest.raises(errors.MachineIDError, match="too many"):
                admin.ping()
        with JoinClient(srv.address, fetch_cluster_cas(srv.address)) as jc, \
                pytest.raises(errors.MachineIDError, match="too many"):
            jc.ping()  # and on the join listener
    finally:
        assert srv.stop() == 0, srv.log_text()


@pytest.mark.parametrize("storage", ["sqlite", "postgresql"])
def test_a_renewal_race_between_workers_has_one_winner(storage: str, tmp_path: Path,
                                                       request: pytest.FixtureRequest) -> None:
    """Two holders of one certificate renew at the same moment; their connections go to different workers (the
    router gives the second to the worker without one). The generation check and bump is one transaction in the
    shared store, so exactly one renews and the other is taken for a copy, in every round."""
    extra = ("--storage", request.getfixturevalue("pg_database")) if storage == "postgresql" else ()
    srv = ServerProc(tmp_path / "data", workers=2, extra_args=extra)
    srv.start()
    try:
        for round_ in range(5):
            with srv.admin() as admin:
                token = new_bot(admin, f"twin-{round_}", ["access"])
            ident = join(srv, token)
            outcomes = race(srv.address, ident)
            assert sorted(outcomes) == ["refused", "renewed"], (round_, outcomes)
            with srv.admin() as admin:
                assert admin.get_bot(f"twin-{round_}").status.locked
    finally:
        assert srv.stop() == 0, srv.log_text()


def test_a_signal_to_the_whole_process_group_stops_the_server_once(tmp_path: Path) -> None:
    """A service manager (systemd's default) or Ctrl-C signals every process of the group: the workers are not
    replaced while the server stops, and it exits cleanly."""
    srv = ServerProc(tmp_path / "data", workers=2)
    srv.log_path.parent.mkdir(parents=True, exist_ok=True)
    srv.start(detach=True)  # a process group of its own, as under a service manager
    assert srv.proc is not None
    pids = [int(p) for p in info(srv)["worker_pids"]]  # type: ignore[attr-defined]
    for sig in (signal.SIGINT, signal.SIGTERM):
        if sig == signal.SIGTERM:
            srv.start(detach=True)
            assert srv.proc is not None
            pids = [int(p) for p in info(srv)["worker_pids"]]  # type: ignore[attr-defined]
        os.killpg(srv.proc.pid, sig)
        assert srv.proc.wait(30) == 0, srv.log_text()
        assert "starting another" not in srv.log_text()
        deadline = time.monotonic() + 10
        while any(alive(p) for p in pids):
            assert time.monotonic() < deadline
            time.sleep(0.1)


def test_shared_buckets_limit_an_address_once_across_processes(tmp_path: Path) -> None:
    """Two workers' views of the shared buckets (two mappings of one file): what one spends, the other sees."""
    key = os.urandom(32)
    a = SharedRateLimits(tmp_path / "b", rate=1.0, burst=3.0, key=key)
    b = SharedRateLimits(tmp_path / "b", rate=1.0, burst=3.0, key=key)
    now = 1000.0
    assert [a.allow("10.0.0.1", now), b.allow("10.0.0.1", now), a.allow("10.0.0.1", now)] == [True] * 3
    assert not b.allow("10.0.0.1", now) and not a.allow("10.0.0.1", now)
    assert b.allow("10.0.0.2", now)  # another address has its own bucket
    assert a.allow("10.0.0.1", now + 1.0) and not b.allow("10.0.0.1", now + 1.0)  # one a second comes back


def test_a_workers_spec_does_not_show_its_secrets() -> None:
    """The spec carries the sealing key, the TLS key and the buckets' key to a worker; printed or logged, none of
    them shows."""
    from machineid.cluster.endpoints import Limits, TLSPair
    from machineid.cluster.worker import WorkerSpec

    secrets_ = {"ca_key": "SEALING-KEY-b64", "key_pem": "-----BEGIN PRIVATE KEY-----x", "buckets_key": "ab" * 32}
    spec = WorkerSpec(index=0, workers=2, data_dir="/d", storage="", cluster_name="c", iam_sts_endpoints=[],
                      chain_pem="chain", client_ca_pem="ca", rate=1.0, burst=2.0, peer_tag="t", mtls_path="m",
                      join_path="j", stamp_path="s", buckets_path="b", metrics=False, grace=1.0, log_level="info",
                      log_format="json", **secrets_)
    shown = repr(spec) + repr(TLSPair(b"TLS-KEY", b"chain", b"ca")) + repr(Limits(1.0, 2.0, "b", b"BUCKET-KEY"))
    assert not any(s in shown for s in [*secrets_.values(), "TLS-KEY", "BUCKET-KEY"]), shown
    assert WorkerSpec.loads(spec.dumps()) == spec  # and the pipe still carries them
