"""What every command shares: the settings, read once (bad ones end the command with their
names, never their values), and the log format of the long-running commands."""

from __future__ import annotations

import logging
import sys

import click

from core.errors import ConfigurationError
from core.settings import Settings, load_settings


def cli_settings() -> Settings:
    try:
        return load_settings()
    except ConfigurationError as error:  # each bad variable by name, without its value
        raise click.ClickException(error.message) from None
    except Exception as error:
        raise click.ClickException(f"configuration error: {error}") from error


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # web3, httpx and OpenLEADR log every request or message at DEBUG/INFO (OpenLEADR with its
    # whole payload): keep them quiet unless asked.
    for noisy in ("httpx", "web3", "urllib3", "asyncio", "openleadr"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.root.level))
