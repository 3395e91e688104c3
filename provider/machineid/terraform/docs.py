"""Reference docs for the Terraform provider, in the layout registry providers use (index, resources/,
data-sources/), generated from the schemas and so from the model's descriptions; `scripts/gen` writes them to
docs/terraform and a test fails when they are stale."""

from __future__ import annotations

import re
from pathlib import Path

from machineid.iac.resource import ResourceDef
from machineid.terraform.schema import (
    PREFIX,
    RESOURCE_SCHEMAS,
    Attribute,
    Block,
    data_sources,
    provider_schema,
    read_only_block,
)

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "terraform" / "docs"


def _type(a: Attribute) -> str:
    cty = a.cty

    def text(t: object) -> str:
        if isinstance(t, str):
            return t.capitalize()
        assert isinstance(t, list)
        if t[0] == "object":
            return "Object"
        return f"{t[0].capitalize()} of {text(t[1])}"

    return text(cty)


def _flags(a: Attribute) -> str:
    out = [_type(a)]
    if a.sensitive:
        out.append("Sensitive")
    if a.forces_replacement:
        out.append("Forces replacement")
    return ", ".join(out)


def _attr_line(a: Attribute, anchor: str, nested: list[tuple[str, Block]]) -> str:
    rules = f" Accepts: {'; '.join(a.rules)}." if a.rules else ""
    inner = read_only_block(a.tp)
    see = ""
    if inner is not None:  # an object-typed attribute (a looked-up role's allow): its fields below
        see = f" (see [below for nested schema](#{anchor}--{a.name}))"
        nested.append((f"{anchor}--{a.name}", inner))
    return f'- <a id="{anchor}--{a.name}"></a>`{a.name}` ({_flags(a)}) {a.description}{rules}{see}\n'


_KINDS = {"single": "Block", "group": "Block, always set: left out, its defaults apply", "list": "Block List"}


def _sections(block: Block, anchor: str, nested: list[tuple[str, Block]]) -> str:
    required = [a for a in block.attributes if a.required]
    optional = [a for a in block.attributes if a.optional]
    computed = [a for a in block.attributes if a.computed and not a.optional]
    out = ""
    for title, attrs, blocks in (("Required", required, []), ("Optional", optional, list(block.blocks)),
                                 ("Read-Only", computed, [])):
        if not attrs and not blocks:
            continue
        out += f"\n### {title}\n\n"
        lines = [(a.name, _attr_line(a, anchor, nested)) for a in attrs]
        for b in blocks:
            sub = f"{anchor}--{b.name}"
            extra = ", Forces replacement" if b.forces_replacement else ""
            lines.append((b.name, f'- `{b.name}` ({_KINDS[b.nesting]}{extra}) {b.description} (see [below for '
                                  f"nested schema](#{sub}))\n"))
            nested.append((sub, b.block))
        out += "".join(line for _, line in sorted(lines))
    return out


def _nested(nested: list[tuple[str, Block]]) -> str:
    out = ""
    seen = 0
    while seen < len(nested):
        anchor, block = nested[seen]
        seen += 1
        out += f'\n<a id="{anchor}"></a>\n### Nested Schema for `{anchor.split("--", 1)[1].replace("--", ".")}`\n'
        out += _sections(block, anchor, nested)
    return out


def _schema_md(block: Block) -> str:
    nested: list[tuple[str, Block]] = []
    body = _sections(block, "schema", nested)
    return "## Schema\n" + body + _nested(nested)


def _example(name: str) -> str:
    path = EXAMPLES / f"{name}.tf"
    if not path.is_file():
        return ""
    return f"## Example Usage\n\n```terraform\n{path.read_text().rstrip()}\n```\n\n"


def _front(title: str, subcategory: str, description: str) -> str:
    first = description.split(". ")[0].rstrip(".") + "."
    return (f"---\npage_title: \"{title} - machineid\"\nsubcategory: \"{subcategory}\"\n"
            f"description: |-\n  {first}\n---\n\n")


def _example_name(rdef: ResourceDef) -> str:
    """The first name the resource's example sets (what an import of that example would name)."""
    path = EXAMPLES / f"resource_{rdef.name}.tf"
    found = re.search(r'^\s*name\s*=\s*"([^"]+)"', path.read_text() if path.is_file() else "", re.M)
    return found.group(1) if found else "NAME"


def _import_md(rdef: ResourceDef) -> str:
    name = PREFIX + rdef.name
    example_id = _example_name(rdef)
    return (f"## Import\n\nImport by {rdef.import_doc}. With an `import` block (OpenTofu, Terraform 1.5 and later), "
            "`plan -generate-config-out=FILE` writes a configuration that then plans with no changes:\n\n"
            f"```terraform\nimport {{\n  to = {name}.this\n  id = \"{example_id}\"\n}}\n```\n\n"
            f"or with the CLI:\n\n```shell\ntofu import {name}.this {example_id}\n```\n")


def render() -> dict[str, str]:
    """Relative path -> Markdown, for every page."""
    pages: dict[str, str] = {}
    provider = provider_schema()
    pages["index.md"] = (
        _front("Provider", "", "The machineid provider manages roles, join tokens and bots of a machineid cluster")
        + "# machineid Provider\n\nMachine identity as code: the roles, join tokens and bots of a machineid cluster, "
          "and the rendered configuration of the bot agent (`machineid bot start`). Install the provider with "
          "`machineid terraform install`, then `tofu init` (or `terraform init`) finds it as "
          "`source = \"machineid/machineid\"`.\n\nJoin tokens and rendered agent configs are `sensitive`; they are "
          "still in the state file in clear text unless the state is encrypted (OpenTofu's `encryption` block) "
          "or kept in a backend you trust.\n\n"
        + _example("provider") + _schema_md(provider.block))
    for rdef, schema in RESOURCE_SCHEMAS.values():
        title = schema.type_name
        pages[f"resources/{rdef.name}.md"] = (
            _front(f"{title} Resource", "", rdef.description) + f"# {title} (Resource)\n\n{rdef.description}\n\n"
            + _example(f"resource_{rdef.name}") + _schema_md(schema.block) + "\n" + _import_md(rdef))
    for ds in data_sources().values():
        short = ds.type_name.removeprefix(PREFIX)
        pages[f"data-sources/{short}.md"] = (
            _front(f"{ds.type_name} Data Source", "", ds.description)
            + f"# {ds.type_name} (Data Source)\n\n{ds.description}\n\n" + _example(f"data_{short}")
            + _schema_md(ds.schema.block))
    return {k: v.rstrip() + "\n" for k, v in pages.items()}


def write(out_dir: Path) -> None:
    for rel, text in render().items():
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
