"""The kind registry (model/kinds.py) is the one place kinds are declared: each declaration has its model class,
its messages and RPCs on the wire, and the servicer serves every RPC the API defines."""

from __future__ import annotations

import pytest

from machineid.api.v1 import cluster_pb2, types_pb2
from machineid.api.v1 import cluster_pb2_grpc as rpc
from machineid.cli import fmt
from machineid.cluster.grpc_api import ClusterServicer, JoinServicer
from machineid.model import documents, kinds
from machineid.model.resources import KIND_ALIASES, KINDS, RULE_RESOURCES


@pytest.mark.parametrize("kind", kinds.REGISTRY, ids=lambda k: k.name)
def test_every_declared_kind_has_its_class_and_wire_names(kind: kinds.KindDef) -> None:
    assert KINDS[kind.name].kind == kind.name
    assert getattr(types_pb2, kind.message).DESCRIPTOR.name == kind.message
    service = cluster_pb2.DESCRIPTOR.services_by_name["ClusterService"]
    wanted = [f"Get{kind.rpc}", f"List{kind.rpc}s", f"Delete{kind.rpc}"] + ([f"Upsert{kind.rpc}"]
                                                                           if kind.generic_upsert else [])
    for name in wanted:
        assert name in service.methods_by_name, name
    listed = getattr(cluster_pb2, f"List{kind.rpc}sResponse").DESCRIPTOR.fields_by_name[kind.plural]
    assert listed.message_type.name == kind.message
    assert KIND_ALIASES[kind.plural] == KIND_ALIASES[kind.name] == kind.name
    assert kind.name in RULE_RESOURCES and documents.VERSIONS[kind.name] == kind.doc_version


def test_every_rpc_of_the_api_is_served() -> None:
    """A method left to the generated base class answers UNIMPLEMENTED."""
    for service, servicer, base in (("ClusterService", ClusterServicer, rpc.ClusterServiceServicer),
                                    ("JoinService", JoinServicer, rpc.JoinServiceServicer)):
        for method in cluster_pb2.DESCRIPTOR.services_by_name[service].methods:
            assert getattr(servicer, method.name) is not getattr(base, method.name), f"{service}.{method.name}"


def test_every_kind_has_a_text_table() -> None:
    assert set(fmt.TABLES) == set(kinds.BY_NAME)


def test_the_model_declares_only_registered_kinds() -> None:
    assert list(KINDS) == [k.name for k in kinds.REGISTRY]
    with pytest.raises(TypeError, match="declared twice"):
        kinds.declare(kinds.ROLE)(type("Again", (), {}))
