"""The provider core in-process, against a cluster in this process (tests/inprocess_client.py: no server, no
network): the lifecycle each adapter builds on (check, diff, plan, create, read, update, delete, import), with the
client injected and one clock, the cluster's and the core's, that the tests move."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from machineid.iac.core import Core, Hints
from machineid.iac.resource import BOT, PROVISION_TOKEN, ROLE
from machineid.iac.unknown import UNKNOWN
from machineid.model.errors import AlreadyExistsError, PreconditionError
from machineid.model.resources import Metadata, ProvisionToken, ProvisionTokenSpec, User, UserSpec
from tests.inprocess import Clock, admin, key_pem, new_cluster
from tests.inprocess_client import InProcessClient

HINTS = Hints(how_to_set={"address": "set address", "identity_file": "set identity_file", "identity": "identity"},
              role_reference="a role resource", import_command=lambda rdef, name: f"import {rdef.name} {name}")
DELETES_FIRST = dataclasses.replace(HINTS, create_first="create it first")  # like Terraform


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def client(tmp_path: Path, clock: Clock) -> InProcessClient:
    cluster = new_cluster(tmp_path, clock)
    return InProcessClient(cluster, admin(cluster))


def core_for(client: InProcessClient, clock: Clock, hints: Hints = HINTS) -> Core:
    c = Core(hints, client_factory=lambda cfg: client)
    c.configure({"address": client.address})
    c.clock = clock
    return c


@pytest.fixture()
def core(client: InProcessClient, clock: Clock) -> Iterator[Core]:
    c = core_for(client, clock)
    yield c
    c.close()


def join(client: InProcessClient, token: str) -> None:
    """The bot's agent joins with a single-use token (which the cluster then deletes)."""
    client.cluster.register_using_token(token, key_pem(), None)


def add_user(client: InProcessClient, name: str, role: str) -> None:
    client.upsert(User(metadata=Metadata(name=name), spec=UserSpec(roles=[role])))


def test_role_lifecycle(core: Core) -> None:
    checked = core.check(ROLE, {"name": "core-web", "allow": {"logins": ["ubuntu"]}})
    assert not checked.violations
    inputs = checked.inputs
    assert inputs["options"] == {"max_session_ttl": "30h"} and inputs["description"] == ""
    created = core.create(ROLE, inputs)
    assert created.id == "core-web"
    read = core.read(ROLE, created.id, created.outputs, created.inputs)
    assert read is not None and read.inputs == inputs
    assert not core.diff(ROLE, read.outputs, read.inputs, inputs).changed
    changed = core.check(ROLE, {"name": "core-web", "allow": {"logins": ["ubuntu", "deploy"]}}).inputs
    diff = core.diff(ROLE, read.outputs, read.inputs, changed)
    assert list(diff.changes) == [("allow", "logins")] and not diff.replaces
    renamed = core.diff(ROLE, read.outputs, read.inputs, dict(changed, name="core-web2"))
    assert renamed.replaces == ["name"] and not renamed.delete_before_replace
    updated = core.update(ROLE, created.id, read.outputs, read.inputs, changed)
    assert updated.outputs["allow"]["logins"] == ["ubuntu", "deploy"]
    with pytest.raises(AlreadyExistsError, match="import role core-web"):
        core.create(ROLE, inputs)
    core.delete(ROLE, created.id, updated.outputs)
    assert core.read(ROLE, created.id, updated.outputs, updated.inputs) is None
    core.delete(ROLE, created.id, updated.outputs)  # already gone: fine


def test_token_name_is_chosen_by_the_cluster_and_expiry_forces_replacement(core: Core, clock: Clock) -> None:
    core.create(BOT, core.check(BOT, {"name": "core-tokbot", "roles": ["access"]}).inputs)
    checked = core.check(PROVISION_TOKEN, {"bot_name": "core-tokbot", "ttl": "10m"})
    assert "name" not in checked.inputs and "expires" not in checked.inputs
    planned = core.plan_create(PROVISION_TOKEN, checked.inputs)
    assert planned["name"] is UNKNOWN and planned["token_expires"] is UNKNOWN
    created = core.create(PROVISION_TOKEN, checked.inputs)
    name = created.outputs["name"]
    assert created.id.startswith("token-") and name not in created.id
    assert not core.diff(PROVISION_TOKEN, created.outputs, checked.inputs, checked.inputs).changed
    clock.now += timedelta(minutes=11)
    diff = core.diff(PROVISION_TOKEN, created.outputs, checked.inputs, checked.inputs)
    assert diff.replaces == ["expires"] and diff.delete_before_replace
    imported = core.read(PROVISION_TOKEN, name, {}, None)
    assert imported is not None and imported.id == created.id and imported.inputs is not None
    assert imported.inputs["expires"] is None  # a single-use token's expiry is the cluster's choice
    core.delete(PROVISION_TOKEN, created.id, created.outputs)
    core.delete(BOT, "core-tokbot", {})


def test_bot_plan_predicts_what_the_update_returns(core: Core) -> None:
    """Terraform requires an apply to match every known planned value: the rendered outputs planned for an update
    must be exactly what the update produces."""
    inputs = core.check(BOT, {"name": "core-robot", "roles": ["access"]}).inputs
    created = core.create(BOT, inputs)
    assert "token: " in created.outputs["agent_config"] and created.outputs["user_name"] == "bot-core-robot"
    news = core.check(BOT, {"name": "core-robot", "roles": ["access"], "destination_dir": "/srv/id",
                            "traits": {"logins": ["ci"]}}).inputs
    planned = core.plan_update(BOT, created.outputs, created.inputs, news)
    updated = core.update(BOT, created.id, created.outputs, created.inputs, news)
    for key in ("agent_config", "start_command", "systemd_unit", "token", "ca_pins", "user_name", "auth_server"):
        assert planned[key] == updated.outputs[key], key
    assert "/srv/id" in updated.outputs["agent_config"]
    rotated = dict(news, token_rotation=1)
    planned = core.plan_update(BOT, updated.outputs, updated.inputs, rotated)
    assert planned["token"] is UNKNOWN and planned["agent_config"] is UNKNOWN
    assert planned["start_command"] == updated.outputs["start_command"]
    after = core.update(BOT, created.id, updated.outputs, updated.inputs, rotated)
    assert after.outputs["token"] != updated.outputs["token"]
    core.delete(BOT, created.id, after.outputs)


def test_unknown_roles_are_checked_unless_planned_in_this_run(core: Core) -> None:
    missing = core.check(BOT, {"name": "core-b", "roles": ["core-later"]})
    assert [(v.path, "does not exist" in v.reason) for v in missing.violations] == [(("roles", 0), True)]
    assert not core.check(BOT, {"name": "core-b", "roles": [UNKNOWN]}).violations
    core.plan_create(ROLE, core.check(ROLE, {"name": "core-later"}).inputs)
    assert not core.check(BOT, {"name": "core-b", "roles": ["core-later"]}).violations


def test_bad_inputs_name_every_field_with_structured_paths(core: Core) -> None:
    result = core.check(PROVISION_TOKEN, {"join_method": "iam", "bot_name": "b", "name": "x",
                                          "allow": [{"aws_account": "12", "aws_arn": "nope"}], "bogus": 1})
    assert sorted(v.path for v in result.violations) == [("allow", 0, "aws_account"), ("allow", 0, "aws_arn"),
                                                          ("bogus",)]


def test_deleting_a_role_waits_for_its_bot_deleted_at_the_same_time(core: Core) -> None:
    """`tofu destroy` of an imported configuration (no references between resources) deletes a role and its bot
    in parallel; the role's delete must not fail because the bot is not gone yet."""
    core.create(ROLE, core.check(ROLE, {"name": "core-busy", "allow": {"logins": ["ci"]}}).inputs)
    core.create(BOT, core.check(BOT, {"name": "core-busybot", "roles": ["core-busy"]}).inputs)
    later = threading.Timer(0.6, lambda: core.delete(BOT, "core-busybot", {}))
    later.start()
    try:
        core.delete(ROLE, "core-busy", {})
    finally:
        later.join()
    assert core.read(ROLE, "core-busy", {}, None) is None


def test_deleting_a_role_still_held_fails_after_the_wait_naming_the_holder(core: Core,
                                                                          client: InProcessClient) -> None:
    core.create(ROLE, core.check(ROLE, {"name": "core-held", "allow": {"logins": ["ci"]}}).inputs)
    add_user(client, "core-holder", "core-held")
    core.in_use_wait = 0.5
    with pytest.raises(PreconditionError, match='role "core-held" is used by core-holder'):
        core.delete(ROLE, "core-held", {})
    assert core.read(ROLE, "core-held", {}, None) is not None


def test_deleting_a_role_held_by_a_bot_not_being_deleted_is_refused_at_once(core: Core) -> None:
    """The refusal was certain from the start: no 60 s wait for a holder that is not going away."""
    core.create(ROLE, core.check(ROLE, {"name": "core-kept", "allow": {"logins": ["ci"]}}).inputs)
    core.create(BOT, core.check(BOT, {"name": "core-keeper", "roles": ["core-kept"]}).inputs)
    assert core.in_use_wait == 60
    started = time.monotonic()
    with pytest.raises(PreconditionError, match='role "core-kept" is used by bot-core-keeper'):
        core.delete(ROLE, "core-kept", {})
    assert time.monotonic() - started < 3
    assert core.read(ROLE, "core-kept", {}, None) is not None
    core.delete(BOT, "core-keeper", {})
    core.delete(ROLE, "core-kept", {})


def test_deleting_a_role_waits_longer_than_the_grace_for_a_holder_being_deleted(core: Core) -> None:
    """A holder this process is deleting is waited for past the grace (its delete may be slow)."""
    core.create(ROLE, core.check(ROLE, {"name": "core-slow", "allow": {"logins": ["ci"]}}).inputs)
    core.create(BOT, core.check(BOT, {"name": "core-slowbot", "roles": ["core-slow"]}).inputs)
    core.holder_grace = 0.3
    core.deletes.add(("bot", "core-slowbot"))  # its delete has started (and takes a while)
    later = threading.Timer(1.5, lambda: core.client().delete("bot", "core-slowbot"))
    later.start()
    try:
        core.delete(ROLE, "core-slow", {})
    finally:
        later.join()
    assert core.read(ROLE, "core-slow", {}, None) is None


def _keypair_token(name: str, key: str, **bound: Any) -> dict[str, Any]:
    return {"name": name, "join_method": "bound_keypair", "bot_name": "core-keybot",
            "bound_keypair": {"onboarding": {"initial_public_key": key}, **bound}}


def test_bound_keypair_token_lifecycle(core: Core) -> None:
    """The block is accepted, status fields are outputs, rotate_after and recovery.limit change in place, the
    onboarding key replaces the token, and nothing in the state is secret."""
    from machineid.model import keys

    core.create(BOT, core.check(BOT, {"name": "core-keybot", "roles": ["access"]}).inputs)
    key = keys.public_line(keys.new_private_key().public_key())
    checked = core.check(PROVISION_TOKEN, _keypair_token("core-keybot-key", key))
    assert not checked.violations, checked.violations
    inputs = checked.inputs
    assert inputs["bound_keypair"]["recovery"] == {"mode": "standard", "limit": 1}
    assert "bound_public_key" not in inputs and "recovery_count" not in inputs  # outputs, never inputs
    planned = core.plan_create(PROVISION_TOKEN, inputs)
    assert planned["bound_public_key"] is UNKNOWN and planned["recovery_count"] is UNKNOWN
    created = core.create(PROVISION_TOKEN, inputs)
    assert created.id == "core-keybot-key"  # not a secret: the name is the ID
    assert created.outputs["bound_public_key"] == "" and created.outputs["recovery_count"] == 0
    assert created.outputs["token_expires"] == ""  # reusable: no expiry unless set
    assert PROVISION_TOKEN.name and not any(
        p.spec.secret and created.outputs.get(p.name) for p in PROVISION_TOKEN.props() if p.name != "name")
    read = core.read(PROVISION_TOKEN, created.id, created.outputs, inputs)
    assert read is not None and read.inputs == inputs
    assert not core.diff(PROVISION_TOKEN, read.outputs, read.inputs, inputs).changed

    edited = core.check(PROVISION_TOKEN, _keypair_token("core-keybot-key", key, rotate_after="2031-01-01T00:00:00Z",
                                                        recovery={"limit": 3})).inputs
    diff = core.diff(PROVISION_TOKEN, read.outputs, read.inputs, edited)
    assert set(diff.changes) == {("bound_keypair", "rotate_after"), ("bound_keypair", "recovery", "limit")}
    assert not diff.replaces
    plan = core.plan_update(PROVISION_TOKEN, read.outputs, read.inputs, edited)
    assert plan["bound_public_key"] is UNKNOWN  # a join may land between plan and apply
    updated = core.update(PROVISION_TOKEN, created.id, read.outputs, read.inputs, edited)
    assert updated.outputs["bound_keypair"]["recovery"]["limit"] == 3

    other = keys.public_line(keys.new_private_key().public_key())
    rekeyed = core.check(PROVISION_TOKEN, _keypair_token("core-keybot-key", other)).inputs
    diff = core.diff(PROVISION_TOKEN, updated.outputs, edited, rekeyed)
    assert diff.replaces == ["bound_keypair"] and diff.delete_before_replace
    core.delete(PROVISION_TOKEN, created.id, updated.outputs)
    core.delete(BOT, "core-keybot", {})


def test_bound_keypair_registration_secret_reads_back_as_given(core: Core) -> None:
    """The cluster keeps only the secret's hash; the state keeps what the program gave, so nothing drifts."""
    core.create(BOT, core.check(BOT, {"name": "core-regbot", "roles": ["access"]}).inputs)
    secret = "0123456789abcdef0123456789abcdef"
    doc = {"name": "core-regbot-key", "join_method": "bound_keypair", "bot_name": "core-regbot",
           "bound_keypair": {"onboarding": {"registration_secret": secret}}}
    inputs = core.check(PROVISION_TOKEN, doc).inputs
    created = core.create(PROVISION_TOKEN, inputs)
    assert created.outputs["bound_keypair"]["onboarding"]["registration_secret"] == secret
    read = core.read(PROVISION_TOKEN, created.id, created.outputs, inputs)
    assert read is not None and read.inputs == inputs
    assert not core.diff(PROVISION_TOKEN, read.outputs, read.inputs, inputs).changed
    stored = core.client().get_token("core-regbot-key")
    assert stored.spec.bound_keypair.onboarding.registration_secret.startswith("sha256:")
    core.delete(PROVISION_TOKEN, created.id, created.outputs)
    core.delete(BOT, "core-regbot", {})


def test_a_renamed_role_is_planned_so_its_bot_checks_and_deleting_first_is_warned(client: InProcessClient,
                                                                                  clock: Clock) -> None:
    """Renaming a role a bot uses: the bot's plan names the new role, which only the role's replacement creates."""
    core = core_for(client, clock, DELETES_FIRST)
    created = core.create(ROLE, core.check(ROLE, {"name": "core-old"}).inputs)
    core.create(BOT, core.check(BOT, {"name": "core-renamebot", "roles": ["core-old"]}).inputs)
    assert core.check(BOT, {"name": "core-renamebot", "roles": ["core-new"]}).violations  # not planned yet
    diff = core.diff(ROLE, created.outputs, created.inputs, core.check(ROLE, {"name": "core-new"}).inputs)
    assert diff.replaces == ["name"]
    assert not core.check(BOT, {"name": "core-renamebot", "roles": ["core-new"]}).violations
    [warning] = diff.warnings
    assert warning.path == ("name",) and 'renaming role "core-old"' in warning.reason
    assert "create it first" in warning.reason
    core.in_use_wait = 0.3
    with pytest.raises(PreconditionError, match="used by bot-core-renamebot.*create it first"):
        core.delete(ROLE, "core-old", created.outputs)
    # where the tool creates the replacement first (Pulumi), there is nothing to warn about
    pulumi_like = core_for(client, clock)
    assert not pulumi_like.diff(ROLE, created.outputs, created.inputs,
                                core.check(ROLE, {"name": "core-new"}).inputs).warnings
    core.delete(BOT, "core-renamebot", {})
    core.delete(ROLE, "core-old", created.outputs)
    core.close()
    pulumi_like.close()


def test_a_single_use_token_spent_by_its_bot_stays_used_instead_of_coming_back(core: Core,
                                                                               client: InProcessClient,
                                                                               clock: Clock) -> None:
    """The cluster deletes a single-use token when its bot joins with it: a refresh must not read that as "gone"
    (the next plan would create a new token after every join, and drift checks would fail)."""
    core.create(BOT, core.check(BOT, {"name": "core-spender", "roles": ["access"]}).inputs)
    inputs = core.check(PROVISION_TOKEN, {"bot_name": "core-spender", "ttl": "10m"}).inputs
    created = core.create(PROVISION_TOKEN, inputs)
    assert created.outputs["used"] is False
    unused = core.read(PROVISION_TOKEN, created.id, created.outputs, inputs)
    assert unused is not None and unused.outputs["used"] is False
    join(client, created.outputs["name"])
    read = core.read(PROVISION_TOKEN, created.id, created.outputs, inputs)
    assert read is not None and read.outputs["used"] is True and read.inputs == inputs
    assert not core.diff(PROVISION_TOKEN, read.outputs, read.inputs, inputs).changed
    clock.now += timedelta(minutes=11)  # past its expiry: nothing to replace
    assert not core.diff(PROVISION_TOKEN, read.outputs, read.inputs, inputs).changed
    # a change would bring the spent secret back with an update: it replaces the token instead
    changed = core.check(PROVISION_TOKEN, {"bot_name": "core-spender", "ttl": "20m"}).inputs
    assert core.diff(PROVISION_TOKEN, read.outputs, read.inputs, changed).replaces == ["ttl"]
    named = core.check(PROVISION_TOKEN, {"bot_name": "core-spender", "ttl": "20m",
                                         "name": read.outputs["name"]}).inputs
    [warning] = core.diff(PROVISION_TOKEN, read.outputs, read.inputs, named).warnings  # the spent name again
    assert warning.path == ("name",) and "does not create a used single-use token again" in warning.reason
    assert read.outputs["name"] not in warning.reason
    with pytest.raises(PreconditionError, match="already used by bot \"core-spender\""):
        client.upsert(ProvisionToken(metadata=Metadata(name=read.outputs["name"]),
                                    spec=ProvisionTokenSpec(bot_name="core-spender")))
    again = core.read(PROVISION_TOKEN, created.id, read.outputs, inputs)  # stays used on the next refresh
    assert again is not None and again.outputs["used"] is True
    # a token deleted by hand (not spent) is gone, and so is a spent one once its bot is gone
    other = core.create(PROVISION_TOKEN, inputs)
    client.delete("token", other.outputs["name"])
    assert core.read(PROVISION_TOKEN, other.id, other.outputs, inputs) is None
    core.delete(BOT, "core-spender", {})
    assert core.read(PROVISION_TOKEN, created.id, read.outputs, inputs) is None


def test_secrets_a_public_token_name_makes_plain(core: Core) -> None:
    """Only a token-method token's name is its secret: an iam or bound_keypair token's name, and a bot's token,
    token_name and rendered config when it joins with one, are no secret. A join method not known (yet) keeps them
    secret. A bot's token_name is plain only when the cluster says it names such a token (an unknown, missing or
    single-use token's name stays secret)."""
    from machineid.model import keys

    for method in ("bound_keypair", "iam"):
        assert core.handler(PROVISION_TOKEN).plain_secrets({"join_method": method}) == {"name"}
        assert core.handler(BOT).plain_secrets({"join_method": method}) == {"token", "token_name", "agent_config"}
    for method in ("token", None, UNKNOWN, "bogus"):
        assert core.handler(PROVISION_TOKEN).plain_secrets({"join_method": method}) == frozenset()
        assert core.handler(BOT).plain_secrets({"join_method": method}) == frozenset()
    assert core.handler(ROLE).plain_secrets({"name": "r"}) == frozenset()

    core.create(BOT, core.check(BOT, {"name": "core-keybot", "roles": ["access"]}).inputs)
    key = keys.public_line(keys.new_private_key().public_key())
    keypair = core.create(PROVISION_TOKEN, core.check(PROVISION_TOKEN, _keypair_token("core-plain-key", key)).inputs)
    single = core.create(PROVISION_TOKEN, core.check(PROVISION_TOKEN, {"bot_name": "core-keybot"}).inputs)
    assert core.plain_inputs(BOT, {"token_name": "core-plain-key"}) == {"token_name"}
    iam = core.create(PROVISION_TOKEN, core.check(PROVISION_TOKEN, {
        "name": "core-plain-iam", "join_method": "iam", "bot_name": "core-keybot",
        "allow": [{"aws_account": "123456789012"}]}).inputs)
    assert iam.id == "core-plain-iam" and core.plain_inputs(BOT, {"token_name": "core-plain-iam"}) == {"token_name"}
    core.delete(PROVISION_TOKEN, iam.id, iam.outputs)
    assert core.plain_inputs(BOT, {"token_name": single.outputs["name"]}) == frozenset()
    assert core.plain_inputs(BOT, {"token_name": "core-no-such-token"}) == frozenset()
    assert core.plain_inputs(BOT, {"token_name": UNKNOWN}) == frozenset()
    assert core.plain_inputs(PROVISION_TOKEN, {"name": "core-plain-key"}) == frozenset()
    core.delete(PROVISION_TOKEN, keypair.id, keypair.outputs)
    core.delete(PROVISION_TOKEN, single.id, single.outputs)
    core.delete(BOT, "core-keybot", {})


def test_only_a_role_name_may_be_unknown_until_created() -> None:
    assert [Core.handler(r).name_unknown_until_created for r in (ROLE, PROVISION_TOKEN, BOT)] == [True, False, False]


def test_a_stop_request_ends_a_delete_waiting_for_holders(core: Core, client: InProcessClient) -> None:
    """Ctrl-C in the CLI (StopProvider, Cancel) must not leave it waiting out the whole in-use wait."""
    core.create(ROLE, core.check(ROLE, {"name": "core-stuck"}).inputs)
    add_user(client, "core-stuckholder", "core-stuck")
    core.deletes.add(("user", "core-stuckholder"))  # going away: the delete waits for it
    threading.Timer(0.5, core.stopping.set).start()
    started = time.monotonic()
    with pytest.raises(PreconditionError, match='stopped while waiting for role "core-stuck"'):
        core.delete(ROLE, "core-stuck", {})
    assert time.monotonic() - started < 10  # the wait is 60 s
    assert core.read(ROLE, "core-stuck", {}, None) is not None
    client.delete("user", "core-stuckholder")
    core.stopping.clear()
    core.delete(ROLE, "core-stuck", {})


def test_a_spent_token_stays_used_after_its_bot_joined_again_with_another(core: Core,
                                                                          client: InProcessClient) -> None:
    """Two joins between refreshes: the first token is still known as spent (the bot remembers the latest 16)."""
    from machineid.model.resources import MAX_SPENT_TOKENS

    core.create(BOT, core.check(BOT, {"name": "core-twice", "roles": ["access"]}).inputs)
    inputs = core.check(PROVISION_TOKEN, {"bot_name": "core-twice"}).inputs
    first, second = core.create(PROVISION_TOKEN, inputs), core.create(PROVISION_TOKEN, inputs)
    join(client, first.outputs["name"])
    join(client, second.outputs["name"])
    for token in (first, second):
        read = core.read(PROVISION_TOKEN, token.id, token.outputs, inputs)
        assert read is not None and read.outputs["used"] is True
    assert client.get_bot("core-twice").status.spent_tokens == [first.id, second.id]
    with pytest.raises(PreconditionError, match="already used"):  # not the last join's, still refused
        client.upsert(ProvisionToken(metadata=Metadata(name=first.outputs["name"]),
                                     spec=ProvisionTokenSpec(bot_name="core-twice")))
    for _ in range(MAX_SPENT_TOKENS):
        join(client, core.create(PROVISION_TOKEN, inputs).outputs["name"])
    spent = client.get_bot("core-twice").status.spent_tokens
    assert len(spent) == MAX_SPENT_TOKENS and first.id not in spent  # bounded: the oldest go
    core.delete(BOT, "core-twice", {})
