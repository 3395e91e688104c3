"""Nodes: created with their single-use join token (token method) or joined with a named iam/bound_keypair Node
token, and their setup (cloud-init user data, a shell script) rendered from both, planned ahead like a bot's agent
config. The cluster owns the node's status (joins, heartbeats): outputs only, never known ahead of an update."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from machineid.iac import node_setup, settings
from machineid.iac.context import Context
from machineid.iac.handlers.base import Handler, State, old_extra
from machineid.iac.resource import NODE, Decoded, encode_inputs
from machineid.iac.resource import time_text as _time
from machineid.iac.unknown import UNKNOWN, contains_unknown
from machineid.model import codec
from machineid.model import validators as v
from machineid.model.errors import (
    AlreadyExistsError,
    FieldViolation,
    MachineIDError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from machineid.model.resources import Metadata, Node, ProvisionToken, ProvisionTokenSpec


@dataclass(frozen=True)
class _Join:
    """How the node joins, as far as the token goes: what decides whether an update needs another token."""

    method: str
    token_name: str
    rotation: int

    @classmethod
    def of(cls, values: dict[str, Any]) -> _Join:
        return cls(str(values.get("join_method") or "token"), str(values.get("token_name") or ""),
                   int(values.get("token_rotation") or 0))


class NodeHandler(Handler):
    rdef = NODE
    # An iam or bound_keypair token's name is public: the token output is then plain. The rendered setup stays a
    # secret whatever the method (an install command may carry what its author did not mean to publish).
    plain_when_name_public = frozenset({"token"})

    def check_references(self, ctx: Context, decoded: Decoded, unknown: set[str]) -> list[FieldViolation]:
        """A named iam or bound_keypair token must exist and be a Node token for this node (unless it is created
        in this run): a node set up with another's token fails only when it boots."""
        name, extra = decoded.obj.metadata.name, decoded.extra
        if extra is None or not extra.token_name or unknown & {"token_name", "name", "join_method"}:
            return []
        if ("token", extra.token_name) in ctx.planned_creates:
            return []
        try:
            token = ctx.client().get_token(extra.token_name)
        except ValidationError:
            return []  # reported by the provider configuration's own check
        except NotFoundError:
            return [FieldViolation(("token_name",), f'token "{extra.token_name}" does not exist on the cluster; '
                                   f"create it (a ProvisionToken with roles [Node], node_name {name} and join_method "
                                   f"{extra.join_method}) or fix the name")]
        except MachineIDError:
            return []  # an identity that may not read tokens: the cluster checks at the join
        problems = []
        if token.spec.roles != ["Node"] or token.spec.node_name != name:
            problems.append(f'joins {"node " + token.spec.node_name if token.spec.node_name else "a bot"}, not '
                            f"node {name}")
        if token.spec.join_method != extra.join_method:
            problems.append(f"is a {token.spec.join_method} token, not {extra.join_method}")
        return [FieldViolation(("token_name",), f'token "{extra.token_name}" ' + " and ".join(problems))] \
            if problems else []

    # ---------------------------------------------------------------- state
    def node_state(self, ctx: Context, node: Node, extra: settings.NodeOnboarding, token: dict[str, Any]) -> State:
        inputs = encode_inputs(self.rdef, node, extra)
        outputs = {**inputs, **codec.encode(node.status), **token, "auth_server": ctx.address}
        outputs.update(self.rendered(ctx, node.metadata.name, extra, outputs))
        return State(node.metadata.name, outputs, inputs)

    @staticmethod
    def rendered(ctx: Context, name: str, extra: settings.NodeOnboarding, outputs: dict[str, Any]) -> dict[str, Any]:
        out = node_setup.render(node_setup.NodeSetupArgs(
            name=name, auth_server=ctx.address, ca_pins=list(outputs.get("ca_pins") or []),
            join_method=extra.join_method, token=str(outputs.get("token") or ""),
            install_command=extra.install_command, package_index=extra.package_index, run_as=extra.run_as,
            agent_path=extra.agent_path))
        return {"user_data": out.user_data, "setup_script": out.setup_script}

    # ---------------------------------------------------------------- tokens
    def _new_token(self, ctx: Context, node: str, extra: settings.NodeOnboarding) -> dict[str, Any]:
        token = ctx.client().upsert(ProvisionToken(
            metadata=Metadata(description=f"join token of node {node}",
                              expires=ctx.clock() + v.parse_duration(extra.token_ttl)),
            spec=ProvisionTokenSpec(roles=["Node"], node_name=node, join_method="token")), create_only=True)
        assert isinstance(token, ProvisionToken)
        return {"token": token.metadata.name, "token_expires": _time(token.metadata.expires)}

    @staticmethod
    def _named_token(ctx: Context, extra: settings.NodeOnboarding) -> dict[str, Any]:
        token = ctx.client().get_token(extra.token_name)
        return {"token": token.metadata.name, "token_expires": _time(token.metadata.expires)}

    @staticmethod
    def _drop_single_use(ctx: Context, outputs: dict[str, Any]) -> None:
        """Deletes the single-use token the state holds (the provider created it): superseded or its node gone, an
        unused one would otherwise stay a live secret until it expires. Already spent or deleted is fine; a refusal
        is said (without the token or the cluster's words about it) and does not undo the change, whose new token
        exists already: the old one still expires."""
        if (outputs.get("join_method") or "token") != "token" or not outputs.get("token"):
            return
        try:
            ctx.client().delete("token", str(outputs["token"]))
        except NotFoundError:
            pass
        except MachineIDError as e:
            expires = outputs.get("token_expires") or "its expiry"
            ctx.log("warning", f"could not delete the previous single-use join token of node {outputs.get('name')} "
                               f"({type(e).__name__}); it stays valid until {expires} unless deleted")

    # ---------------------------------------------------------------- CRUD
    def create(self, ctx: Context, decoded: Decoded) -> State:
        node, extra = decoded.obj, decoded.extra
        client = ctx.client()
        try:
            created = client.upsert(node, create_only=True)
        except AlreadyExistsError:
            raise AlreadyExistsError(self.exists_message(ctx, node.metadata.name)) from None
        assert isinstance(created, Node)
        try:
            token = self._new_token(ctx, node.metadata.name, extra) if extra.join_method == "token" \
                else self._named_token(ctx, extra)
        except MachineIDError:
            with contextlib.suppress(MachineIDError):  # no half-made node left behind for the next apply to trip on
                client.delete("node", node.metadata.name)
            raise
        token["ca_pins"] = list(client.ping().ca_pins)
        return self.node_state(ctx, created, extra, token)

    def read(self, ctx: Context, id: str, old_outputs: dict[str, Any], old_inputs: dict[str, Any] | None,
             importing: bool) -> State:
        client = ctx.client()
        node = client.get_node(id)
        values = old_inputs or old_outputs
        extra = old_extra(self.rdef, values) if values else self._imported_join(ctx, id)
        keep = {k: old_outputs[k] for k in settings.NODE_TOKEN_OUTPUTS if old_outputs.get(k) is not None}
        if not keep.get("token") and extra.join_method != "token":
            keep["token"] = extra.token_name
        if not keep.get("ca_pins"):
            keep["ca_pins"] = list(client.ping().ca_pins)
        return self.node_state(ctx, node, extra, keep)

    @staticmethod
    def _imported_join(ctx: Context, node: str) -> settings.NodeOnboarding:
        """An imported node joins with its one iam or bound_keypair Node token, where the cluster has exactly one
        (the provider-only inputs then match a program that names it); otherwise with a single-use token the
        provider never saw (the rendered setup says so)."""
        extra = settings.NodeOnboarding()
        try:
            named = [t for t in ctx.client().list("token") if isinstance(t, ProvisionToken)
                     and t.spec.node_name == node and t.spec.join_method != "token"]
        except PermissionDeniedError:
            return extra
        if len(named) == 1:
            extra.join_method, extra.token_name = named[0].spec.join_method, named[0].metadata.name
        return extra

    def update(self, ctx: Context, decoded: Decoded, old_outputs: dict[str, Any], olds: dict[str, Any],
               news: dict[str, Any]) -> State:
        node, extra = decoded.obj, decoded.extra
        client = ctx.client()
        current = client.upsert(node)  # identical content writes nothing; the status stays the cluster's
        assert isinstance(current, Node)
        keep = {k: old_outputs[k] for k in settings.NODE_TOKEN_OUTPUTS if old_outputs.get(k) is not None}
        if _Join.of(olds) != _Join.of(news):
            token = self._new_token(ctx, node.metadata.name, extra) if extra.join_method == "token" \
                else self._named_token(ctx, extra)
            self._drop_single_use(ctx, old_outputs)
            keep.update(token)
            ctx.log("info", f"node {node.metadata.name} joins with a new {extra.join_method} token")
        if not keep.get("ca_pins"):
            keep["ca_pins"] = list(client.ping().ca_pins)
        return self.node_state(ctx, current, extra, keep)

    def plan_update(self, ctx: Context, old_outputs: dict[str, Any], olds: dict[str, Any],
                    news: dict[str, Any]) -> dict[str, Any]:
        """The status is the cluster's (a heartbeat may land between plan and apply): unknown. The rendered setup
        is a pure function of the inputs and the token: known unless the token changes (a new single-use one)."""
        outputs = {**old_outputs, **news}
        outputs.update({k: UNKNOWN for k in settings.NODE_STATUS_OUTPUTS})
        outputs["auth_server"] = ctx.address
        extra_names = [p.name for p in self.rdef.props() if p.section == "extra"]
        if any(contains_unknown(news.get(k)) for k in ("name", *extra_names)):
            outputs.update({k: UNKNOWN for k in ("token", "token_expires", *settings.NODE_RENDERED_OUTPUTS)})
            return outputs
        extra = old_extra(self.rdef, news)
        if _Join.of(olds) != _Join.of(news):
            outputs["token"] = extra.token_name if extra.join_method != "token" else UNKNOWN
            outputs["token_expires"] = UNKNOWN
        if outputs.get("token") is UNKNOWN or not outputs.get("ca_pins"):
            outputs.update({k: UNKNOWN for k in settings.NODE_RENDERED_OUTPUTS})
            return outputs
        outputs.update(self.rendered(ctx, str(news.get("name") or old_outputs.get("name")), extra, outputs))
        return outputs

    def delete(self, ctx: Context, id: str, outputs: dict[str, Any]) -> None:
        self._drop_single_use(ctx, outputs)  # the secret first: it must not outlive a half-done delete
        super().delete(ctx, id, outputs)
