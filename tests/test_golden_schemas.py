"""The schemas both tools see, against committed golden files: a change to what users program against shows up
as a diff in review, on purpose or not. `GOLDEN_UPDATE=1` rewrites the files (then read the diff).

- Pulumi: sdk/schema.json (the SDKs are generated from it; tests/test_sdk.py checks they are fresh).
- Terraform: tests/golden/terraform-schema.json, the GetProviderSchema answer of both protocol versions, as JSON
  with each attribute's cty type decoded."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

ROOT = Path(__file__).resolve().parent.parent
PULUMI_GOLDEN = ROOT / "sdk" / "schema.json"
TERRAFORM_GOLDEN = ROOT / "tests" / "golden" / "terraform-schema.json"


def _compare(golden: Path, text: str) -> None:
    if os.environ.get("GOLDEN_UPDATE") == "1":
        golden.write_text(text)
        return
    assert golden.is_file(), f"{golden} is missing: run with GOLDEN_UPDATE=1"
    assert golden.read_text() == text, f"{golden.name} differs: if the change is meant, run with GOLDEN_UPDATE=1 " \
                                       "and review the diff (then scripts/gen for the SDKs)"


def _decoded_types(value: Any) -> Any:
    """cty types travel as JSON in bytes fields: shown decoded, so the golden file reads as the schema."""
    if isinstance(value, dict):
        return {k: json.loads(base64.b64decode(v)) if k == "type" and isinstance(v, str) else _decoded_types(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_decoded_types(v) for v in value]
    return value


def terraform_schema_json() -> str:
    from machineid.terraform import servicer
    from machineid.terraform.proto import tfplugin5_pb2, tfplugin6_pb2

    out = {}
    for version, pb, cls in ((6, tfplugin6_pb2, servicer.Servicer), (5, tfplugin5_pb2, servicer.Servicer5)):
        resp = cls(pb).GetProviderSchema(pb.GetProviderSchema.Request(), None)  # type: ignore[arg-type]
        out[f"protocol {version}"] = _decoded_types(json_format.MessageToDict(resp, preserving_proto_field_name=True))
    return json.dumps(out, indent=1, sort_keys=True) + "\n"


def test_pulumi_schema_matches_its_golden_file() -> None:
    from machineid.pulumi import schema

    _compare(PULUMI_GOLDEN, schema.dumps())


def test_terraform_schema_matches_its_golden_file() -> None:
    _compare(TERRAFORM_GOLDEN, terraform_schema_json())


def test_a_changed_schema_fails_until_the_golden_file_is_refreshed(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    golden = tmp_path / "schema.json"
    monkeypatch.setenv("GOLDEN_UPDATE", "1")
    _compare(golden, "{}\n")
    monkeypatch.delenv("GOLDEN_UPDATE")
    _compare(golden, "{}\n")
    with pytest.raises(AssertionError, match="GOLDEN_UPDATE=1"):
        _compare(golden, '{"changed": true}\n')
