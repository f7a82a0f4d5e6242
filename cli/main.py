"""``ovpp-wallet``: the command line of the backend. Each command group lives in its own module
(``cli/serve.py``, ``cli/onramp.py``, …); this one is the root that gathers them."""

from __future__ import annotations

import click

from cli.deploy import deploy, migrate
from cli.dev import balances, dev, dev_token
from cli.indexer import indexer
from cli.keys import keys
from cli.onramp import onramp
from cli.program_server import program_server
from cli.registry import registry
from cli.relayer import relayer, relayer_authorize
from cli.rewards import rewards
from cli.serve import serve
from cli.show import show_config, show_schema
from cli.sponsor import sponsor
from cli.webhooks import app_webhooks, webhooks
from core.errors import DomainError


class _CommandGroup(click.Group):
    """Expected failures (the ``DomainError`` root, e.g. a missing OVPP_KEK in production)
    end a command with their user-safe message and exit code 1, never a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except DomainError as error:
            raise click.ClickException(error.message) from error


@click.group(cls=_CommandGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """OpenVPP wallet backend: GraphQL API, custodial wallets, relayer and enrollment."""


for command in (
    serve,
    relayer,
    relayer_authorize,
    indexer,
    migrate,
    deploy,
    dev_token,
    dev,
    balances,
    keys,
    registry,
    sponsor,
    onramp,
    program_server,
    webhooks,
    app_webhooks,
    rewards,
    show_schema,
    show_config,
):
    main.add_command(command)

if __name__ == "__main__":
    main()
