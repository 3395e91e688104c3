"""The tfplugin6 and tfplugin5 servicers: thin. DynamicValues in (values.decode), terraform.provider decides,
DynamicValues and diagnostics out. Protocol 5 has other method and message names for the same calls."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

import grpc

from machineid.terraform import schema as tfschema
from machineid.terraform import values
from machineid.terraform.diagnostics import Diagnostic
from machineid.terraform.provider import TerraformProvider

log = logging.getLogger("machineid.terraform")
F = TypeVar("F", bound=Callable[..., Any])
_NESTING = {"single": 1, "list": 2, "group": 5}


def _dv(pb: ModuleType, value: Any) -> Any:
    return pb.DynamicValue(msgpack=values.encode(value))


def _value(dv: Any) -> Any:
    return values.decode(dv.msgpack, dv.json) if dv is not None else None


def _diags(pb: ModuleType, diags: list[Diagnostic]) -> list[Any]:
    out = []
    for d in diags:
        msg = pb.Diagnostic(severity=pb.Diagnostic.WARNING if d.warning else pb.Diagnostic.ERROR,
                            summary=d.summary, detail=d.detail)
        if d.steps:
            steps = []
            for kind, key in d.steps:
                if kind == "attribute":
                    steps.append(pb.AttributePath.Step(attribute_name=str(key)))
                elif kind == "key":
                    steps.append(pb.AttributePath.Step(element_key_string=str(key)))
                else:
                    steps.append(pb.AttributePath.Step(element_key_int=int(key)))
            msg.attribute.CopyFrom(pb.AttributePath(steps=steps))
        out.append(msg)
    return out


def _guard(method: F) -> F:
    """A provider bug becomes an error diagnostic that says so, never a crashed plugin (the CLI would hang or
    print a Go stack trace that helps nobody)."""

    @functools.wraps(method)
    def wrapper(self: Servicer, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except Exception as e:
            log.exception("machineid provider bug in %s", method.__name__)
            resp = self.pb_response(method.__name__)
            if resp is None:
                raise
            resp.diagnostics.extend(_diags(self.pb, [Diagnostic(
                "machineid provider bug", f"{method.__name__}: {type(e).__name__}: {e}; please report it with the "
                                          "provider's log (TF_LOG=debug)")]))
            return resp

    return wrapper  # type: ignore[return-value]


class Servicer:
    """Serves one protocol version; pb is that version's generated messages."""

    _RESPONSES: dict[str, str] = {}

    def __init__(self, pb: ModuleType, provider: TerraformProvider | None = None) -> None:
        self.pb = pb
        self.provider = provider or TerraformProvider()
        self._schema_response: Any = None

    def pb_response(self, method: str) -> Any:
        name = self._RESPONSES.get(method, method)
        msg = getattr(self.pb, name, None)
        return msg.Response() if msg is not None else None

    # ---------------------------------------------------------------- schema
    def _attribute(self, a: tfschema.Attribute) -> Any:
        doc = a.description + (" Changing it forces a replacement." if a.forces_replacement else "")
        return self.pb.Schema.Attribute(name=a.name, type=tfschema.cty_json(a.tp), description=doc,
                                        required=a.required, optional=a.optional, computed=a.computed,
                                        sensitive=a.sensitive)

    def _block(self, b: tfschema.Block, version: int = 0) -> Any:
        return self.pb.Schema.Block(
            version=version, description=b.description, attributes=[self._attribute(a) for a in b.attributes],
            block_types=[self.pb.Schema.NestedBlock(
                type_name=n.name, nesting=_NESTING[n.nesting], block=self._block(n.block)) for n in b.blocks])

    def _schema(self, s: tfschema.Schema) -> Any:
        return self.pb.Schema(version=s.version, block=self._block(s.block, s.version))

    def _get_schema(self) -> Any:
        if self._schema_response is None:
            pb = self.pb
            resp = pb.GetProviderSchema.Response(provider=self._schema(tfschema.provider_schema()))
            for name, (_, s) in tfschema.RESOURCE_SCHEMAS.items():
                resp.resource_schemas[name].CopyFrom(self._schema(s))
            for name, ds in tfschema.data_sources().items():
                resp.data_source_schemas[name].CopyFrom(self._schema(ds.schema))
            resp.server_capabilities.get_provider_schema_optional = True
            self._schema_response = resp
        return self._schema_response

    @_guard
    def GetProviderSchema(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._get_schema()

    # ---------------------------------------------------------------- provider
    @_guard
    def ValidateProviderConfig(self, request: Any, context: grpc.ServicerContext) -> Any:
        diags = self.provider.validate_provider(_value(request.config) or {})
        return self.pb.ValidateProviderConfig.Response(diagnostics=_diags(self.pb, diags))

    @_guard
    def ConfigureProvider(self, request: Any, context: grpc.ServicerContext) -> Any:
        diags = self.provider.configure(_value(request.config) or {})
        return self.pb_response("ConfigureProvider").__class__(diagnostics=_diags(self.pb, diags))

    @_guard
    def StopProvider(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.provider.core.stopping.set()  # Ctrl-C: a waiting delete gives up instead of holding the CLI
        return self.pb_response("StopProvider")

    # ---------------------------------------------------------------- resources
    @_guard
    def ValidateResourceConfig(self, request: Any, context: grpc.ServicerContext) -> Any:
        diags = self.provider.validate_resource(request.type_name, _value(request.config) or {})
        return self.pb_response("ValidateResourceConfig").__class__(diagnostics=_diags(self.pb, diags))

    @_guard
    def UpgradeResourceState(self, request: Any, context: grpc.ServicerContext) -> Any:
        state, diags = self.provider.upgrade(request.type_name, request.version, request.raw_state.json)
        resp = self.pb.UpgradeResourceState.Response(diagnostics=_diags(self.pb, diags))
        if state is not None:
            resp.upgraded_state.CopyFrom(_dv(self.pb, state))
        return resp

    @_guard
    def ReadResource(self, request: Any, context: grpc.ServicerContext) -> Any:
        state, diags = self.provider.read(request.type_name, _value(request.current_state))
        return self.pb.ReadResource.Response(new_state=_dv(self.pb, state), diagnostics=_diags(self.pb, diags),
                                             private=request.private)

    @_guard
    def PlanResourceChange(self, request: Any, context: grpc.ServicerContext) -> Any:
        planned, replace, diags = self.provider.plan(request.type_name, _value(request.prior_state),
                                                     _value(request.proposed_new_state), _value(request.config))
        pb = self.pb
        return pb.PlanResourceChange.Response(
            planned_state=_dv(pb, planned), diagnostics=_diags(pb, diags), planned_private=request.prior_private,
            requires_replace=[pb.AttributePath(steps=[pb.AttributePath.Step(attribute_name=n)]) for n in replace])

    @_guard
    def ApplyResourceChange(self, request: Any, context: grpc.ServicerContext) -> Any:
        state, diags = self.provider.apply(request.type_name, _value(request.prior_state),
                                           _value(request.planned_state), _value(request.config))
        return self.pb.ApplyResourceChange.Response(new_state=_dv(self.pb, state), diagnostics=_diags(self.pb, diags),
                                                    private=request.planned_private)

    @_guard
    def ImportResourceState(self, request: Any, context: grpc.ServicerContext) -> Any:
        state, diags = self.provider.import_(request.type_name, request.id)
        pb = self.pb
        resp = pb.ImportResourceState.Response(diagnostics=_diags(pb, diags))
        if state is not None:
            resp.imported_resources.append(pb.ImportResourceState.ImportedResource(
                type_name=request.type_name, state=_dv(pb, state)))
        return resp

    # ---------------------------------------------------------------- data sources
    @_guard
    def ValidateDataResourceConfig(self, request: Any, context: grpc.ServicerContext) -> Any:
        diags = self.provider.validate_data_source(request.type_name, _value(request.config) or {})
        return self.pb_response("ValidateDataResourceConfig").__class__(diagnostics=_diags(self.pb, diags))

    @_guard
    def ReadDataSource(self, request: Any, context: grpc.ServicerContext) -> Any:
        state, diags = self.provider.read_data_source(request.type_name, _value(request.config) or {})
        resp = self.pb.ReadDataSource.Response(diagnostics=_diags(self.pb, diags))
        if state is not None:
            resp.state.CopyFrom(_dv(self.pb, state))
        return resp


class Servicer5(Servicer):
    """Protocol 5: the same calls under their older names."""

    _RESPONSES = {"GetSchema": "GetProviderSchema", "PrepareProviderConfig": "PrepareProviderConfig",
                  "ValidateResourceTypeConfig": "ValidateResourceTypeConfig",
                  "ValidateDataSourceConfig": "ValidateDataSourceConfig", "Configure": "Configure", "Stop": "Stop",
                  "ConfigureProvider": "Configure", "StopProvider": "Stop",
                  "ValidateResourceConfig": "ValidateResourceTypeConfig",
                  "ValidateDataResourceConfig": "ValidateDataSourceConfig"}

    def GetSchema(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.GetProviderSchema(request, context)

    @_guard
    def PrepareProviderConfig(self, request: Any, context: grpc.ServicerContext) -> Any:
        diags = self.provider.validate_provider(_value(request.config) or {})
        return self.pb.PrepareProviderConfig.Response(prepared_config=request.config,
                                                      diagnostics=_diags(self.pb, diags))

    def ValidateResourceTypeConfig(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.ValidateResourceConfig(request, context)

    def ValidateDataSourceConfig(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.ValidateDataResourceConfig(request, context)

    def Configure(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.ConfigureProvider(request, context)

    def Stop(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.StopProvider(request, context)


def register(server: grpc.Server, version: int) -> None:
    """Add the servicer of the negotiated protocol version to the plugin's gRPC server."""
    if version == 6:
        from machineid.terraform.proto import tfplugin6_pb2 as pb6
        from machineid.terraform.proto import tfplugin6_pb2_grpc as rpc6

        rpc6.add_ProviderServicer_to_server(Servicer(pb6), server)
    else:
        from machineid.terraform.proto import tfplugin5_pb2 as pb5
        from machineid.terraform.proto import tfplugin5_pb2_grpc as rpc5

        rpc5.add_ProviderServicer_to_server(Servicer5(pb5), server)
