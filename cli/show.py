"""``schema`` and ``config``: what the API serves and how it is configured."""

from __future__ import annotations

import click
from pydantic.fields import FieldInfo

from cli.common import cli_settings
from core.program_server_settings import ProgramServerSettings
from core.settings import Settings
from core.urls import rpc_url_shown, without_credentials


@click.command("schema")
@click.option("--write", is_flag=True, help="Write clients/schema.graphql instead of printing.")
def show_schema(write: bool) -> None:
    """Print the GraphQL schema (SDL) the API serves; --write publishes it to the clients."""
    from api.sdl import PUBLISHED_SCHEMA, schema_sdl

    sdl = schema_sdl(cli_settings())
    if write:
        PUBLISHED_SCHEMA.write_text(sdl, encoding="utf-8")
        click.echo(f"wrote {PUBLISHED_SCHEMA}")
        return
    click.echo(sdl, nl=False)


def settings_fields() -> dict[str, FieldInfo]:
    """Every setting in the order documented: the program server's (a base class of
    ``Settings``, so first in ``model_fields``) last."""
    own = ProgramServerSettings.model_fields
    return dict(sorted(Settings.model_fields.items(), key=lambda item: item[0] in own))


@click.command("config")
@click.option("--markdown", is_flag=True, help="Print the README's configuration table.")
def show_config(markdown: bool) -> None:
    """Show every setting (secrets hidden)."""
    fields = settings_fields()
    if markdown:
        click.echo("| variable | default | meaning |\n|---|---|---|")
        for name, field in fields.items():
            default = field.default if field.default_factory is None else "[]"
            if field.is_required():
                default = "(required)"
            if name == "data_dir":
                default = "./var"
            click.echo(f"| `OVPP_{name.upper()}` | `{default}` | {field.description or ''} |")
        return
    settings = cli_settings()
    shown = {"database_url": without_credentials, "rpc_url": rpc_url_shown}
    for name in fields:
        value = getattr(settings, name)
        if isinstance(value, str) and name in shown:
            value = shown[name](value)
        click.echo(f"OVPP_{name.upper()}={value!s}")
