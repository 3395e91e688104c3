"""The audit log and the database stay bounded at fleet scale: retention, expired tokens and challenges swept in
batches, anonymous refusals aggregated, anonymous challenges that write nothing; and `ctl audit` filters, exports
JSON lines and follows."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from machineid.cluster import challenges, janitor
from machineid.cluster.janitor import Janitor
from machineid.cluster.process import MACHINEID
from machineid.cluster.service import Cluster, Page
from machineid.model import codec, errors
from machineid.model.resources import ProvisionToken
from tests.conftest import ServerProc, run_cli
from tests.inprocess import Clock, add_bot, admin, key_pem, new_cluster

# The cluster tests run against a server with one worker process and with two.
pytestmark = pytest.mark.workers(1, 2)


@pytest.fixture()
def clock() -> Clock:
    c = Clock()
    c.now = datetime.now(UTC)  # audit records carry the wall clock's time
    return c


@pytest.fixture()
def c(tmp_path: Path, clock: Clock) -> Iterator[Cluster]:
    yield new_cluster(tmp_path, clock)


def test_the_janitor_prunes_old_audit_records_in_batches_and_expired_tokens_and_challenges(
        c: Cluster, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(janitor, "BATCH", 7)
    for i in range(30):
        add_bot(c, f"b{i}")
    live = c.upsert(admin(c), codec.decode(ProvisionToken, {"spec": {"bot_name": "b0"}, "metadata": {
        "expires": codec.format_time(clock.now + timedelta(days=2))}}))
    for _ in range(3):  # the records of challenges spent by joins, and one left by an earlier version
        c.challenges.spend(c.create_iam_challenge(), clock.now + challenges.TTL)
    c.backend.create(challenges.LEGACY_KIND, "0" * 64, {"expires": codec.format_time(clock.now + challenges.TTL)})
    records = len(c.backend.audit_events(0, 10000))
    sweeper = Janitor(c.objects, timedelta(days=90))
    assert sweeper.sweep().audit == 0  # nothing is 90 days old yet
    clock.now += timedelta(days=1)  # the bots' 1h tokens and the 5-minute challenges expired
    swept = sweeper.sweep()
    assert (swept.tokens, swept.challenges) == (30, 4)
    assert [t.metadata.name for t in c.list_page(admin(c), ProvisionToken, Page())[0]] == [live.metadata.name]
    expired = [e for e in c.backend.audit_events(0, 10000) if e.action == "token.expire"]
    assert len(expired) == 30 and expired[0].actor == "janitor" and expired[0].target.startswith("token/token-")
    clock.now += timedelta(days=90)
    assert sweeper.sweep().audit >= records + 30  # every old record, seven at a time
    assert Janitor(c.objects, None).sweep().audit == 0  # no retention: nothing pruned


def test_refusals_of_anonymous_callers_are_aggregated_past_a_budget(c: Cluster, clock: Clock) -> None:
    c.objects.denials_per_window = 5
    for i in range(12):
        with pytest.raises(errors.PermissionDeniedError):
            c.register_using_token(f"guess{i:028d}", key_pem(), None)
    denied = [e for e in c.backend.audit_events(0, 1000) if e.outcome == "denied"]
    assert len(denied) == 5
    clock.now += timedelta(minutes=2)
    Janitor(c.objects, None).sweep()  # the window ended: its count is written
    summary = [e for e in c.backend.audit_events(0, 1000) if e.details.get("suppressed")]
    assert len(summary) == 1 and summary[0].details["suppressed"] == 7 and summary[0].target == "*"
    assert summary[0].action == "bot.join"


def test_anonymous_challenges_write_nothing(c: Cluster) -> None:
    """An anonymous caller asking for challenges fills no table and no cap that others' joins depend on (a stored
    challenge with a global cap let one connection switch off every IAM and bound_keypair join)."""
    add_bot(c, "robot")
    kinds = (challenges.SPENT_KIND, challenges.LEGACY_KIND)
    before = [c.backend.count(k) for k in kinds], len(c.backend.audit_events(0, 10000))
    issued = {c.create_iam_challenge() for _ in range(3000)}
    issued |= {c.create_bound_keypair_challenge(f"token-{i}")[0] for i in range(3000)}
    assert len(issued) == 6000
    assert ([c.backend.count(k) for k in kinds], len(c.backend.audit_events(0, 10000))) == before


# ---------------------------------------------------------------- over the wire, with the CLI


def test_ctl_audit_filters_and_exports_json_lines(server: ServerProc) -> None:
    server.ctl("bots", "add", "audited", "--roles=access")
    server.ctl("users", "add", "auditee", "--roles=auditor")
    lines = server.ctl("audit", "--kind", "bot", "--format", "jsonl").stdout.splitlines()
    events = [json.loads(line) for line in lines]
    assert events and all(e["action"].startswith("bot.") for e in events)
    assert any(e["action"] == "bot.create" and e["target"] == "bot/audited" for e in events)
    out = server.ctl("audit", "--kind", "user.create", "--format", "jsonl").stdout
    only = [json.loads(x) for x in out.splitlines()]
    assert only and {e["action"] for e in only} == {"user.create"}
    by_admin = json.loads(server.ctl("audit", "--user", "admin", "--format", "json").stdout)
    assert by_admin and {e["actor"] for e in by_admin} == {"admin"}
    assert json.loads(server.ctl("audit", "--since", "2999-01-01T00:00:00Z", "--format", "json").stdout) == []
    recent = json.loads(server.ctl("audit", "--since", "1h", "--limit", "2", "--format", "json").stdout)
    assert len(recent) == 2 and recent[-1]["id"] >= by_admin[-1]["id"]
    bad = server.ctl("audit", "--kind", "bot;drop", check=False)
    assert bad.returncode != 0 and "action" in bad.stderr and "Traceback" not in bad.stderr
    bad = server.ctl("audit", "--since", "yesterday", check=False)
    assert bad.returncode != 0 and "--since" in bad.stderr


def test_ctl_audit_follow_prints_new_events_as_they_happen(server: ServerProc) -> None:
    proc = subprocess.Popen([MACHINEID, "ctl", "--data-dir", str(server.data_dir), "audit", "--follow",
                             "--since", "1s", "--kind", "role", "--format", "jsonl"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        server.ctl("create", "-f", "-", input="kind: role\nmetadata:\n  name: followed\n")
        assert proc.stdout is not None
        event = json.loads(proc.stdout.readline())
        assert event["action"] == "role.create" and event["target"] == "role/followed"
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_the_server_checks_its_audit_retention(tmp_path: Path) -> None:
    bad = run_cli("server", "start", "--data-dir", str(tmp_path / "d"), "--audit-retention", "ninety", check=False)
    assert bad.returncode != 0 and "--audit-retention" in bad.stderr and "90d" in bad.stderr
