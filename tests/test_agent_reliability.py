"""The agent under the failures a fleet sees, in-process against a real cluster: a renewal whose answer is lost and
an agent restarted meanwhile, two agents on one data dir, and an identity that expired while the cluster was out
of reach."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from machineid.agent import bot as agent_bot
from machineid.agent.bot import AgentError, BotAgent
from machineid.agent.config import AgentConfig, Destination, Onboarding, Storage
from machineid.api.client import Client
from machineid.api.identity import Identity
from machineid.model import codec
from machineid.model.errors import PreconditionError, TransportError
from machineid.model.resources import Bot, Role
from tests.conftest import ServerProc


@pytest.fixture()
def admin(server: ServerProc) -> Iterator[Client]:
    with server.admin() as client:
        yield client


def config(server: ServerProc, admin: Client, tmp_path: Path, name: str) -> AgentConfig:
    created = admin.create_bot(codec.decode(Bot, {"metadata": {"name": name}, "spec": {"roles": ["access"]}}))
    return AgentConfig(auth_server=server.address,
                       onboarding=Onboarding(token=created.token, ca_pins=list(created.ca_pins)),
                       storage=Storage(directory=str(tmp_path / f"{name}-data")),
                       destinations=[Destination(directory=str(tmp_path / f"{name}-dest"))])


def test_a_lost_renewal_answer_and_a_restart_do_not_lock_the_bot(server: ServerProc, admin: Client, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config(server, admin, tmp_path, "lossy")
    first = BotAgent(cfg)
    assert first.cycle().action == "joined"
    real_cycle = Client.agent_cycle

    def renewed_but_answer_lost(self: Client, *args: object, **kw: object) -> object:
        real_cycle(self, *args, **kw)  # type: ignore[arg-type]
        raise TransportError("the connection dropped before the answer arrived")

    monkeypatch.setattr(Client, "agent_cycle", renewed_but_answer_lost)
    with pytest.raises(TransportError):
        first.cycle()
    monkeypatch.setattr(Client, "agent_cycle", real_cycle)
    first.unlock()  # the process dies
    restarted = BotAgent(cfg)
    outcome = restarted.cycle()
    assert outcome.action == "renewed" and outcome.identity.info.generation == 2
    bot = admin.get_bot("lossy")
    assert not bot.status.locked and bot.status.generation == 2
    assert not (Path(cfg.storage.directory) / agent_bot.PENDING_KEY_FILE).exists()


def test_two_agents_on_one_data_dir_are_refused(server: ServerProc, admin: Client, tmp_path: Path) -> None:
    cfg = config(server, admin, tmp_path, "twin")
    one = BotAgent(cfg)
    one.cycle()
    with pytest.raises(PreconditionError, match="another agent is running"):  # "still in use": exit 7
        BotAgent(cfg).cycle()
    assert not admin.get_bot("twin").status.locked


def test_an_identity_that_expired_during_an_outage_is_reported_as_such(
        server: ServerProc, admin: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config(server, admin, tmp_path, "sleeper")
    agent = BotAgent(cfg)
    agent.cycle()
    # the outage outlived the certificate
    monkeypatch.setattr(Identity, "expires", property(lambda self: datetime.now(UTC) - timedelta(minutes=5)))
    with pytest.raises(AgentError, match="expired .* cannot be renewed; onboard the bot again"):
        agent.cycle()  # the cluster is back: the join with the spent token is refused, and the reason is said
    agent.unlock()
    cfg.auth_server = "127.0.0.1:1"  # and while it is still out of reach, the loop stops instead of retrying
    looping = BotAgent(cfg)
    looping.identity = agent.identity
    with pytest.raises(AgentError, match="expired"):
        looping.run()


def test_the_agent_renews_within_what_the_cluster_granted(server: ServerProc, admin: Client, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """A role's max_session_ttl of 1m with a renewal interval of 90s: renewing on the requested schedule would let
    the certificates lapse; the agent renews within a third of the granted lifetime and says why."""
    import threading

    from machineid.model.resources import Role

    admin.upsert(codec.decode(Role, {"metadata": {"name": "short-lived"}, "spec": {
        "allow": {"logins": ["ci"]}, "options": {"max_session_ttl": "1m"}}}))
    created = admin.create_bot(codec.decode(Bot, {"metadata": {"name": "hasty"}, "spec": {"roles": ["short-lived"]}}))
    cfg = AgentConfig(auth_server=server.address, renewal_interval="90s", certificate_ttl="1h",
                      onboarding=Onboarding(token=created.token, ca_pins=list(created.ca_pins)),
                      storage=Storage(directory=str(tmp_path / "hasty-data")),
                      destinations=[Destination(directory=str(tmp_path / "hasty-dest"))])
    stop = threading.Event()
    agent = BotAgent(cfg, stop)
    loop = threading.Thread(target=agent.run, daemon=True)
    with caplog.at_level("WARNING", logger="machineid.agent"):
        loop.start()
        deadline = datetime.now(UTC) + timedelta(seconds=45)
        while datetime.now(UTC) < deadline and admin.get_bot("hasty").status.generation < 2:
            stop.wait(1)
        stop.set()
        loop.join(30)
    assert admin.get_bot("hasty").status.generation >= 2  # renewed well before the 90s interval
    assert any("less than the requested certificate_ttl" in r.getMessage() for r in caplog.records)


def test_an_imported_bots_rendered_config_says_why_it_has_no_token() -> None:
    from machineid.iac.functions import RenderArgs, render

    text = render(RenderArgs(bot_name="imported", ca_pins=["sha256:" + "0" * 64], auth_server="h:1")).agent_config
    assert text.startswith("# No join token: this bot was imported") and "token_rotation" in text
    assert not render(RenderArgs(bot_name="b", token="t0k", auth_server="h:1")).agent_config.startswith("# No join")


def test_certificates_are_written_even_when_the_node_listing_is_refused(server: ServerProc, admin: Client,
                                                                         tmp_path: Path) -> None:
    """An operator may deny a bot the node listing (or the listing may fail): the renewed certificates must still
    reach the destination; ssh_config keeps the nodes of the last listing."""
    admin.upsert(codec.decode(Role, {"metadata": {"name": "no-node-list"},
                                     "spec": {"deny": {"rules": [{"resources": ["node"], "verbs": ["list"]}]}}}))
    created = admin.create_bot(codec.decode(Bot, {"metadata": {"name": "blind"},
                                                  "spec": {"roles": ["access", "no-node-list"]}}))
    cfg = AgentConfig(auth_server=server.address,
                      onboarding=Onboarding(token=created.token, ca_pins=list(created.ca_pins)),
                      storage=Storage(directory=str(tmp_path / "blind-data")),
                      destinations=[Destination(directory=str(tmp_path / "blind-dest"))])
    outcome = BotAgent(cfg).cycle()
    assert outcome.action == "joined"
    dest = tmp_path / "blind-dest"
    written = Identity.load(dest / "identity")
    assert written.expires > datetime.now(UTC) and (dest / "key-cert.pub").is_file()
    assert "Host *.test.example" in (dest / "ssh_config").read_text()


def test_a_bound_keypair_agent_joins_again_after_an_outage_outlived_its_identity(
        server: ServerProc, admin: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unlike a token join, the key pair joins again: the expired identity is no reason to stop, during the outage
    or after it."""
    import threading

    from machineid.agent import keypair
    from machineid.model.resources import ProvisionToken

    admin.create_bot(codec.decode(Bot, {"metadata": {"name": "keysleeper"}, "spec": {"roles": ["access"]}}))
    data = tmp_path / "keysleeper-data"
    public = keypair.create(data)
    admin.upsert(codec.decode_and_validate(ProvisionToken, {
        "metadata": {"name": "keysleeper-key"},
        "spec": {"join_method": "bound_keypair", "bot_name": "keysleeper",
                 "bound_keypair": {"onboarding": {"initial_public_key": public}}}}))
    cfg = AgentConfig(auth_server=server.address,
                      onboarding=Onboarding(join_method="bound_keypair", token="keysleeper-key",
                                            ca_pins=list(admin.ping().ca_pins)),
                      storage=Storage(directory=str(data)),
                      destinations=[Destination(directory=str(tmp_path / "keysleeper-dest"))])
    agent = BotAgent(cfg)
    assert agent.cycle().action == "joined"
    expired = datetime.now(UTC) - timedelta(minutes=5)
    monkeypatch.setattr(Identity, "expires", property(lambda self: expired))
    assert agent.cycle().action == "joined"
    agent.unlock()
    cfg.auth_server = "127.0.0.1:1"  # while the cluster is out of reach the loop keeps trying
    stop = threading.Event()
    looping = BotAgent(cfg, stop)
    looping.identity = agent.identity
    threading.Timer(2.0, stop.set).start()
    looping.run()  # returns when stopped, instead of giving up on the expired identity
