"""Metrics and health as an operator's monitoring sees them: the server's `--metrics-listen` and the agent's
`--diag-listen`, scraped over real HTTP and parsed as Prometheus parses the exposition format."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from machineid.api.client import JoinClient, fetch_cluster_cas
from machineid.cluster.process import MACHINEID
from machineid.model.errors import RateLimitedError
from machineid.quickstart import free_port
from tests.conftest import ServerProc, bot_start, run_cli

# The cluster tests run against a server with one worker process and with two.
pytestmark = pytest.mark.workers(1, 2)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(address: str) -> Samples:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain; version=")
        text = answer.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def probe(address: str, path: str) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(f"http://{address}{path}", timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture()
def metered(tmp_path: Path) -> Iterator[ServerProc]:
    srv = ServerProc(tmp_path / "cluster", extra_args=("--metrics-listen", "127.0.0.1:0"))
    srv.start()
    yield srv
    if srv.proc is not None:
        srv.stop()


def metrics_address(srv: ServerProc) -> str:
    return str(json.loads((srv.data_dir / "server.json").read_text())["metrics_address"])


def agent_args(srv: ServerProc, tmp_path: Path, token: str) -> list[str]:
    return bot_start(srv, tmp_path / "data", tmp_path / "dest", token)


def test_the_server_counts_joins_renewals_refusals_and_reports_its_state(metered: ServerProc, tmp_path: Path) -> None:
    address = metrics_address(metered)
    before = scrape(address)
    assert value(before, "machineid_live_instances") == 0
    assert value(before, "machineid_ca_certificate_expiry_timestamp_seconds", ca="tls") > time.time() + 86400
    assert ("machineid_audit_backlog", ()) in before

    metered.ctl("create", "-f", "-", input="kind: role\nmetadata: {name: r}\nspec: {allow: {logins: [x]}}\n")
    token = json.loads(metered.ctl("bots", "add", "b", "--roles=r", "--format=json").stdout)["token"]
    run_cli(*agent_args(metered, tmp_path, token), "--oneshot")  # joins
    run_cli(*agent_args(metered, tmp_path, token), "--oneshot")  # renews with the stored identity
    refused = run_cli(*agent_args(metered, tmp_path / "other", "no-such-token"), "--oneshot", check=False)
    assert refused.returncode != 0

    after = scrape(address)
    assert value(after, "machineid_joins_total", method="token", result="ok") == 1
    failed = {dict(k[1])["result"]: v for k, v in after.items()
              if k[0] == "machineid_joins_total" and dict(k[1])["result"] != "ok"}
    assert sum(failed.values()) == 1, failed
    assert value(after, "machineid_renewals_total", result="ok") == 1
    assert value(after, "machineid_rpc_duration_seconds_count", service="machineid.v1.JoinService",
                 method="RegisterUsingToken", code="OK") == 1
    assert value(after, "machineid_rpc_duration_seconds_count", service="machineid.v1.ClusterService",
                 method="AgentCycle", code="OK") == 1  # the agent renews in its one-call cycle
    assert value(after, "machineid_store_operation_duration_seconds_count", operation="get") > 0
    assert value(after, "machineid_live_instances") == 1

    # a flood of anonymous calls from one address: past the burst they are refused, and counted
    with JoinClient(metered.address, fetch_cluster_cas(metered.address)) as client:
        refusals = 0
        for _ in range(260):
            try:
                client.ping()
            except RateLimitedError:
                refusals += 1
    flood = scrape(address)
    assert value(flood, "machineid_limit_refusals_total", limit="anonymous_calls") == refusals > 0


def test_the_agent_is_ready_once_written_and_unhealthy_when_renewal_keeps_failing(metered: ServerProc,
                                                                                   tmp_path: Path) -> None:
    metered.ctl("create", "-f", "-", input="kind: role\nmetadata: {name: r}\nspec: {allow: {logins: [x]}}\n")
    token = json.loads(metered.ctl("bots", "add", "b", "--roles=r", "--format=json").stdout)["token"]
    diag = f"127.0.0.1:{free_port()}"
    with open(tmp_path / "agent.log", "wb") as log:
        agent = subprocess.Popen([MACHINEID, *agent_args(metered, tmp_path, token), "--renewal-interval", "1s",
                                  "--diag-listen", diag, "--log-format", "text"], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        ready: tuple[int, dict[str, str]] = (0, {})
        while time.monotonic() < deadline:
            try:
                ready = probe(diag, "/readyz")
            except OSError:
                ready = (0, {})
            if ready[0] == 200:
                break
            time.sleep(0.2)
        assert ready[0] == 200 and "certificates valid until" in ready[1]["reason"], \
            (ready, (tmp_path / "agent.log").read_text())
        assert probe(diag, "/healthz") == (200, {"status": "ok", "reason": "renewing"})
        samples = scrape(diag)
        assert value(samples, "machineid_agent_cycles_total", result="ok") >= 1
        assert value(samples, "machineid_agent_certificate_expiry_timestamp_seconds") > time.time()
        assert value(samples, "machineid_agent_destination_healthy", destination=str(tmp_path / "dest")) == 1

        metered.stop()  # the cluster goes away: every renewal now fails
        deadline = time.monotonic() + 40
        health = (200, {})
        while time.monotonic() < deadline:
            health = probe(diag, "/healthz")
            if health[0] == 503:
                break
            time.sleep(0.5)
        assert health[0] == 503 and "cycles in a row failed" in health[1]["reason"], health
        assert token not in json.dumps(health[1])
        assert probe(diag, "/readyz")[0] == 200  # the certificates it wrote are still valid: still serving
        samples = scrape(diag)
        assert value(samples, "machineid_agent_cycles_total", result="unreachable") >= 3
        assert value(samples, "machineid_agent_consecutive_failures") >= 3
        assert probe(diag, "/nothing")[0] == 404
    finally:
        agent.terminate()
        agent.wait(10)
