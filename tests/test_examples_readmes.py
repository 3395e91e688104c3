"""Every example says what it shows, what it needs and how to run it (issue 18 §4)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_example_has_a_readme_with_what_it_shows_needs_and_how_to_run_it() -> None:
    examples = sorted(p for p in (ROOT / "examples").iterdir() if p.is_dir())
    assert {p.name for p in examples} >= {"ci", "iam", "keypair", "quickstart", "quickstart-yaml", "terraform"}
    for example in examples:
        readme = example / "README.md"
        assert readme.is_file(), f"{example.name} has no README.md"
        text = readme.read_text()
        assert text.startswith(f"# examples/{example.name}: "), example.name
        for section in ("## What it shows", "## What it needs", "## How to run it"):
            assert section in text, f"examples/{example.name}/README.md: no {section!r}"
