"""An agent's cycle over one connection (AgentCycle): the renewal, the destinations' certificates and the nodes in
one call, authorised by the renewal and not by the certificate it supersedes; copy detection as before."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from machineid.agent.bot import AgentError, BotAgent
from machineid.agent.config import AgentConfig, Destination, Onboarding, Storage
from machineid.api import certs
from machineid.api import client as api_client
from machineid.api.client import Client, identity_from_certs
from machineid.api.identity import Identity
from machineid.model import codec, errors
from machineid.model.resources import Bot, Node, Role
from tests.conftest import ServerProc

# The cluster tests run against a server with one worker process and with two.
pytestmark = pytest.mark.workers(1, 2)


@pytest.fixture()
def admin(server: ServerProc) -> Iterator[Client]:
    with server.admin() as client:
        yield client


def config(server: ServerProc, admin: Client, tmp_path: Path, name: str, roles: tuple[str, ...] = ("access",)
           ) -> AgentConfig:
    created = admin.create_bot(codec.decode(Bot, {"metadata": {"name": name}, "spec": {"roles": list(roles)}}))
    return AgentConfig(auth_server=server.address,
                       onboarding=Onboarding(token=created.token, ca_pins=list(created.ca_pins)),
                       storage=Storage(directory=str(tmp_path / f"{name}-data")),
                       destinations=[Destination(directory=str(tmp_path / f"{name}-dest"))])


def add_node(admin: Client, name: str, labels: dict[str, str] | None = None) -> None:
    admin.upsert(codec.decode(Node, {"metadata": {"name": name, "labels": labels or {}},
                                     "spec": {"addr": "10.1.2.3:22"}}))


@pytest.fixture()
def channels(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The channels the API clients open (each is one connection, one TLS handshake), by the server name asked."""
    opened: list[str] = []
    real = grpc.secure_channel

    def counting(target: str, creds: Any, options: Any = None, **kw: Any) -> grpc.Channel:
        opened.append(dict(options or {}).get("grpc.ssl_target_name_override", ""))
        return real(target, creds, options, **kw)

    monkeypatch.setattr(api_client.grpc, "secure_channel", counting)
    return opened


def test_a_renewal_cycle_opens_one_connection_and_writes_everything(server: ServerProc, admin: Client,
                                                                    tmp_path: Path, channels: list[str]) -> None:
    add_node(admin, "cycle-node-1")
    cfg = config(server, admin, tmp_path, "one-conn")
    agent = BotAgent(cfg)
    assert agent.cycle().action == "joined"
    channels.clear()
    outcome = agent.cycle()
    assert outcome.action == "renewed" and outcome.identity.info.generation == 2
    assert channels == [certs.SERVER_NAME]  # renewal, output certificates and nodes: one mutual-TLS connection
    dest = tmp_path / "one-conn-dest"
    written = Identity.load(dest / "identity")
    assert not written.info.renewable and written.info.bot_name == "one-conn"
    assert written.expires > datetime.now(UTC) and (dest / "key-cert.pub").is_file()
    assert "cycle-node-1" in (dest / "ssh_config").read_text()
    assert admin.get_bot("one-conn").status.generation == 2
    stored = agent._load_state()
    assert stored is not None and stored.info.generation == 2 and stored.key_pem != written.key_pem


def test_a_superseded_identity_that_runs_a_cycle_locks_the_bot_and_gets_nothing(
        server: ServerProc, admin: Client, tmp_path: Path) -> None:
    cfg = config(server, admin, tmp_path, "copied")
    agent = BotAgent(cfg)
    agent.cycle()
    stolen = agent._load_state()
    assert stolen is not None
    agent.cycle()  # the original renews: the copy is now a superseded generation
    key = certs.new_key()
    with Client(server.address, stolen) as c, pytest.raises(errors.PermissionDeniedError, match="is now locked"):
        c.agent_cycle(certs.public_key_pem(key.public_key()), None, certs.public_key_pem(key.public_key()),
                      list_nodes=True)
    assert admin.get_bot("copied").status.locked
    with pytest.raises(AgentError, match="renewal refused"):
        agent.cycle()  # and the original, too, until an administrator unlocks the bot
    admin.unlock_bot("copied")


def test_a_cycle_checks_the_request_before_it_renews(server: ServerProc, admin: Client, tmp_path: Path) -> None:
    agent = BotAgent(config(server, admin, tmp_path, "careful"))
    agent.cycle()
    current = agent._load_state()
    assert current is not None
    key = certs.public_key_pem(certs.new_key().public_key())
    with Client(server.address, current) as c:
        with pytest.raises(errors.ValidationError, match="output_public_key"):
            c.agent_cycle(key, None, "not a key")
        with pytest.raises(errors.ValidationError, match="node_page_size"):
            c.agent_cycle(key, None, key, list_nodes=True, node_page_size=5000)
        assert admin.get_bot("careful").status.generation == 1  # nothing renewed: the identity still works
        answer = c.agent_cycle(key, timedelta(minutes=30))
    assert answer is not None and answer.output_certs is None and answer.nodes == []
    assert answer.certs.generation == 2


def test_a_cycle_pages_the_nodes_and_the_rest_come_as_the_output_identity(server: ServerProc, admin: Client,
                                                                          tmp_path: Path) -> None:
    for i in range(3):
        add_node(admin, f"paged-{i}", {"team": "paging"})
    admin.upsert(codec.decode(Role, {"metadata": {"name": "paging"},
                                     "spec": {"allow": {"logins": ["x"], "node_labels": {"team": ["paging"]}}}}))
    agent = BotAgent(config(server, admin, tmp_path, "pager", ("paging",)))
    agent.cycle()
    current = agent._load_state()
    assert current is not None
    key, out_key = certs.new_key(), certs.new_key()
    with Client(server.address, current) as c:
        answer = c.agent_cycle(certs.public_key_pem(key.public_key()), None,
                               certs.public_key_pem(out_key.public_key()), list_nodes=True, node_page_size=2)
    assert answer is not None and answer.output_certs is not None and not answer.nodes_error
    assert [n.metadata.name for n in answer.nodes] == ["paged-0", "paged-1"] and answer.next_page_token
    output = identity_from_certs(certs.private_key_pem(out_key), answer.output_certs)
    with Client(server.address, output) as c:
        rest = c.list_as(Node, page_token=answer.next_page_token)
    assert [n.metadata.name for n in rest] == ["paged-2"]


def test_a_refused_node_listing_in_a_cycle_still_writes_the_renewed_certificates(
        server: ServerProc, admin: Client, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    admin.upsert(codec.decode(Role, {"metadata": {"name": "cycle-no-list"},
                                     "spec": {"deny": {"rules": [{"resources": ["node"], "verbs": ["list"]}]}}}))
    agent = BotAgent(config(server, admin, tmp_path, "cycle-blind", ("access", "cycle-no-list")))
    agent.cycle()
    before = Identity.load(tmp_path / "cycle-blind-dest" / "identity")
    outcome = agent.cycle()
    assert outcome.action == "renewed" and outcome.identity.info.generation == 2
    after = Identity.load(tmp_path / "cycle-blind-dest" / "identity")
    assert after.tls_cert != before.tls_cert
    assert "could not list the nodes" in caplog.text


def test_an_agent_falls_back_to_three_calls_on_a_server_without_agent_cycle(
        server: ServerProc, admin: Client, tmp_path: Path, channels: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    add_node(admin, "old-server-node")
    agent = BotAgent(config(server, admin, tmp_path, "legacy"))
    agent.cycle()
    monkeypatch.setattr(Client, "agent_cycle", lambda self, *a, **kw: None)  # as on UNIMPLEMENTED
    channels.clear()
    outcome = agent.cycle()
    assert outcome.action == "renewed" and outcome.identity.info.generation == 2
    assert channels == [certs.SERVER_NAME] * 3  # renew, output certificates, nodes: as older agents do
    assert "old-server-node" in (tmp_path / "legacy-dest" / "ssh_config").read_text()
