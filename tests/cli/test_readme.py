"""The README's configuration table is generated from the settings; it must not go stale."""

from __future__ import annotations

from click.testing import CliRunner

from cli.main import main
from core.settings import REPO_ROOT, Settings


def test_readme_configuration_table_is_current() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    start = readme.index("<!-- config-table:start -->\n") + len("<!-- config-table:start -->\n")
    end = readme.index("<!-- config-table:end -->")
    generated = CliRunner().invoke(main, ["config", "--markdown"]).output
    assert readme[start:end] == generated, "run `ovpp-wallet config --markdown` into the README"
    for name in Settings.model_fields:
        assert f"`OVPP_{name.upper()}`" in readme
