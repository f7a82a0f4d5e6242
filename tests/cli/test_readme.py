"""The README and docs/configuration.md must not go stale: the configuration table is generated
from the settings, the README's tour runs against the published schema, its links resolve."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from graphql import (
    DocumentNode,
    GraphQLObjectType,
    OperationDefinitionNode,
    build_schema,
    parse,
    validate,
)

from cli.main import main
from core.settings import REPO_ROOT, Settings

README = REPO_ROOT / "README.md"
CONFIGURATION = REPO_ROOT / "docs" / "configuration.md"
SCHEMA = REPO_ROOT / "clients" / "schema.graphql"


def test_configuration_table_is_current() -> None:
    text = CONFIGURATION.read_text()
    start = text.index("<!-- config-table:start -->\n") + len("<!-- config-table:start -->\n")
    end = text.index("<!-- config-table:end -->")
    generated = CliRunner().invoke(main, ["config", "--markdown"]).output
    assert text[start:end] == generated, (
        "run `ovpp-wallet config --markdown` into docs/configuration.md"
    )
    for name in Settings.model_fields:
        assert f"`OVPP_{name.upper()}`" in text


def test_readme_is_short() -> None:
    assert len(README.read_text().splitlines()) <= 150


def test_readme_commands_exist() -> None:
    readme = README.read_text()
    makefile = (REPO_ROOT / "Makefile").read_text()
    for target in ("run", "test"):
        assert f"make {target}" in readme
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), f"no `{target}` in the Makefile"


def test_readme_links_resolve() -> None:
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README.read_text())
    assert links
    for link in links:
        assert (REPO_ROOT / link).is_file(), f"README links to a missing {link}"


def _tour_operations() -> list[OperationDefinitionNode]:
    blocks = re.findall(r"```graphql\n(.*?)```", README.read_text(), re.DOTALL)
    return [
        node
        for block in blocks
        for node in parse(block).definitions
        if isinstance(node, OperationDefinitionNode)
    ]


def test_readme_tour_is_valid_against_the_schema() -> None:
    schema = build_schema(SCHEMA.read_text(encoding="utf-8"))
    operations = _tour_operations()
    assert len(operations) >= 10
    for operation in operations:
        errors = validate(schema, DocumentNode(definitions=(operation,)))
        assert not errors, [error.message for error in errors]


@pytest.mark.parametrize("root", ["Query", "Mutation", "Subscription"])
def test_readme_scopes_name_every_root_field(root: str) -> None:
    section = README.read_text().split("## Scopes", 1)[1].split("\n## ", 1)[0]
    root_type = build_schema(SCHEMA.read_text(encoding="utf-8")).type_map[root]
    assert isinstance(root_type, GraphQLObjectType)
    missing = [name for name in root_type.fields if f"`{name}`" not in section]
    assert not missing, f"the README's scope table does not say who may call {missing}"
