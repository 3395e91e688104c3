"""The ResourceProvider gRPC servicer: a thin adapter. Wire values in (values.decode), machineid.pulumi.provider
decides, wire values out with every secret wrapped. Messages for users go through the engine's Log RPC."""

from __future__ import annotations

import functools
import logging
from collections.abc import Collection
from typing import Any

import grpc
from google.protobuf import empty_pb2
from pulumi.runtime.proto import engine_pb2, engine_pb2_grpc, plugin_pb2, provider_pb2, provider_pb2_grpc

from machineid import __version__
from machineid.api import status
from machineid.iac.config import ProviderConfig
from machineid.model import codec
from machineid.pulumi import values
from machineid.pulumi.provider import FUNCTIONS, Provider, config_values
from machineid.pulumi.resources import RESOURCES, camel

log = logging.getLogger("machineid.pulumi")
_SEVERITY = {"debug": engine_pb2.DEBUG, "info": engine_pb2.INFO, "warning": engine_pb2.WARNING,
             "error": engine_pb2.ERROR}


_handler = status.handler(log, lambda name, err: f"machineid provider bug in {name}: {err!r}; please report it "
                          "with the provider's log")


def resource_type(urn: str, type_: str = "") -> str:
    if type_:
        return type_
    return urn.split("::")[2].split("$")[-1]


def urn_name(urn: str, name: str = "") -> str:
    return name or urn.split("::")[-1]


def check_failures(failures: list[tuple[str, str]]) -> list[Any]:
    """Check failures with the property path in the message and none in `property`: the engine would print the
    property's value itself, as `{<nil>}` for any path below the top level and Go-formatted (a secret in clear)
    for a top-level one."""
    return [provider_pb2.CheckFailure(property="", reason=message) for _, message in failures]


class Servicer(provider_pb2_grpc.ResourceProviderServicer):
    def __init__(self, engine_address: str = "") -> None:
        self._engine: engine_pb2_grpc.EngineStub | None = None
        self.set_engine(engine_address)
        self.provider = Provider(self.log)
        self._schema: str | None = None

    def set_engine(self, address: str) -> None:
        if address:
            self._engine = engine_pb2_grpc.EngineStub(grpc.insecure_channel(address))

    def log(self, severity: str, message: str, urn: str = "") -> None:
        if self._engine is None:
            log.info("%s", message)
            return
        try:
            self._engine.Log(engine_pb2.LogRequest(severity=_SEVERITY.get(severity, engine_pb2.INFO),
                                                   message=message, urn=urn), timeout=10)
        except grpc.RpcError:
            log.info("%s", message)

    @staticmethod
    @functools.cache
    def _secret_props(token: str) -> frozenset[str]:
        """Asked on every resource call: derived once per resource type."""
        r = RESOURCES.get(token)
        return r.secret_props() if r else frozenset()

    def _secrets(self, token: str, props: dict[str, Any], given: Collection[str] = frozenset(),
                 check: bool = False) -> frozenset[str]:
        """The properties to send as secrets: those the engine sent as secrets (given), the resource's own, and those
        holding a nested secret in these values, less those that these values make plain (an iam or bound_keypair
        token's name, and a bot's token, tokenName and agentConfig when it joins with one). In Check, a bot's
        tokenName is plain when it names an iam or bound_keypair token on the cluster."""
        r = RESOURCES.get(token)
        if r is None:
            return frozenset(given)
        plain = r.plain_props_in(props)
        if check:
            plain |= self.provider.plain_in_check(token, props)
        return (frozenset(given) | self._secret_props(token) | r.secret_props_in(props)) - plain

    @staticmethod
    @functools.cache
    def _secret_fields(cls: type) -> frozenset[str]:
        """Secret fields of the provider config or a function's result, by their Pulumi names."""
        return frozenset(camel(f.name) for f, _, spec in codec.model_fields(cls) if spec and spec.secret)

    # ---------------------------------------------------------------- plugin
    @_handler
    def GetPluginInfo(self, request: empty_pb2.Empty, context: grpc.ServicerContext) -> plugin_pb2.PluginInfo:
        return plugin_pb2.PluginInfo(version=__version__)

    @_handler
    def Handshake(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.set_engine(request.engine_address)
        return provider_pb2.ProviderHandshakeResponse(accept_secrets=True, accept_resources=True,
                                                      accept_outputs=False)

    @_handler
    def GetSchema(self, request: Any, context: grpc.ServicerContext) -> Any:
        if self._schema is None:
            from machineid.pulumi import schema  # only the schema load needs it: keep start-up short

            self._schema = schema.dumps()
        return provider_pb2.GetSchemaResponse(schema=self._schema)

    @_handler
    def Cancel(self, request: empty_pb2.Empty, context: grpc.ServicerContext) -> empty_pb2.Empty:
        self.provider.core.stopping.set()  # Ctrl-C: a waiting delete gives up instead of holding the engine
        return empty_pb2.Empty()

    # ---------------------------------------------------------------- configuration
    @_handler
    def CheckConfig(self, request: Any, context: grpc.ServicerContext) -> Any:
        news, secrets = values.decode(request.news)
        secret = secrets | self._secret_fields(ProviderConfig)
        result = self.provider.check_config(news, secret)
        return provider_pb2.CheckResponse(inputs=values.encode(result.inputs, secret),
                                          failures=check_failures(result.failures))

    @_handler
    def DiffConfig(self, request: Any, context: grpc.ServicerContext) -> Any:
        olds, _ = values.decode(request.old_inputs if request.HasField("old_inputs") else request.olds)
        news, _ = values.decode(request.news)
        old_cfg, new_cfg = config_values(olds), config_values(news)
        changed = [camel(k) for k in ProviderConfig.fields() if old_cfg.get(k) != new_cfg.get(k)]
        return provider_pb2.DiffResponse(
            changes=provider_pb2.DiffResponse.DIFF_SOME if changed else provider_pb2.DiffResponse.DIFF_NONE,
            diffs=changed, hasDetailedDiff=True,
            detailedDiff={k: provider_pb2.PropertyDiff(kind=provider_pb2.PropertyDiff.UPDATE, inputDiff=True)
                          for k in changed})

    @_handler
    def Configure(self, request: Any, context: grpc.ServicerContext) -> Any:
        if request.HasField("args"):
            args, _ = values.decode(request.args)
        else:
            args = {k.split(":")[-1]: v for k, v in request.variables.items()}
        self.provider.configure(args)
        return provider_pb2.ConfigureResponse(acceptSecrets=True, supportsPreview=True, acceptResources=True,
                                              acceptOutputs=False)

    # ---------------------------------------------------------------- resources
    @_handler
    def Check(self, request: Any, context: grpc.ServicerContext) -> Any:
        token = resource_type(request.urn, request.type)
        news, secrets = values.decode(request.news)
        result = self.provider.check(token, urn_name(request.urn, request.name), news, secrets)
        for _, message in result.failures:
            self.log("debug", f"check: {message}", request.urn)
        return provider_pb2.CheckResponse(inputs=values.encode(result.inputs,
                                                               self._secrets(token, result.inputs, secrets, True)),
                                          failures=check_failures(result.failures))

    @_handler
    def Diff(self, request: Any, context: grpc.ServicerContext) -> Any:
        token = resource_type(request.urn, request.type)
        if request.HasField("old_inputs") and request.old_inputs == request.news and \
                self.provider.unchanged_is_no_change(token):
            # A preview with no change diffs every resource like this: compared as messages, nothing decoded.
            return provider_pb2.DiffResponse(changes=provider_pb2.DiffResponse.DIFF_NONE, hasDetailedDiff=True)
        olds, _ = values.decode(request.olds)
        old_inputs = values.decode(request.old_inputs)[0] if request.HasField("old_inputs") else None
        news, _ = values.decode(request.news)
        result = self.provider.diff(token, olds, old_inputs, news)
        top = sorted({p.split(".")[0] for p in result.diffs})
        return provider_pb2.DiffResponse(
            replaces=result.replaces,
            changes=provider_pb2.DiffResponse.DIFF_SOME if result.changed else provider_pb2.DiffResponse.DIFF_NONE,
            diffs=top,
            detailedDiff={path: provider_pb2.PropertyDiff(kind=kind, inputDiff=True)  # type: ignore[arg-type]
                          for path, kind in result.diffs.items()},
            hasDetailedDiff=True,
            deleteBeforeReplace=result.delete_before_replace,
        )

    @_handler
    def Create(self, request: Any, context: grpc.ServicerContext) -> Any:
        token = resource_type(request.urn, request.type)
        props, secrets = values.decode(request.properties)
        state = self.provider.create(token, request.urn, props, request.preview)
        return provider_pb2.CreateResponse(id=state.id,
                                           properties=values.encode(state.outputs,
                                                                    self._secrets(token, state.outputs, secrets)))

    @_handler
    def Read(self, request: Any, context: grpc.ServicerContext) -> Any:
        token = resource_type(request.urn, request.type)
        outputs, secrets = values.decode(request.properties)
        inputs, in_secrets = values.decode(request.inputs) if request.HasField("inputs") else ({}, set())
        state = self.provider.read(token, request.id, outputs, inputs or None)
        if not state.id:
            return provider_pb2.ReadResponse(id="")
        all_secrets = self._secrets(token, state.outputs, secrets | in_secrets)
        resp = provider_pb2.ReadResponse(id=state.id, properties=values.encode(state.outputs, all_secrets))
        if state.inputs is not None:
            resp.inputs.CopyFrom(values.encode(state.inputs, all_secrets))
        return resp

    @_handler
    def Update(self, request: Any, context: grpc.ServicerContext) -> Any:
        token = resource_type(request.urn, request.type)
        olds, secrets = values.decode(request.olds)
        old_inputs = values.decode(request.old_inputs)[0] if request.HasField("old_inputs") else None
        news, new_secrets = values.decode(request.news)
        state = self.provider.update(token, request.id, olds, old_inputs, news, request.preview)
        return provider_pb2.UpdateResponse(
            properties=values.encode(state.outputs, self._secrets(token, state.outputs, secrets | new_secrets)))

    @_handler
    def Delete(self, request: Any, context: grpc.ServicerContext) -> empty_pb2.Empty:
        token = resource_type(request.urn, request.type)
        outputs, _ = values.decode(request.properties)
        self.provider.delete(token, request.id, outputs)
        return empty_pb2.Empty()

    @_handler
    def Invoke(self, request: Any, context: grpc.ServicerContext) -> Any:
        args, _ = values.decode(request.args)
        result, failures = self.provider.invoke(request.tok, args)
        resp = provider_pb2.InvokeResponse(failures=[provider_pb2.CheckFailure(property=p, reason=r)
                                                     for p, r in failures])
        if not failures:
            fn = FUNCTIONS[request.tok]
            getattr(resp, "return").CopyFrom(values.encode(result, set(self._secret_fields(fn.outputs))))
        return resp
