"""The published schema: ``clients/schema.graphql`` is this module's output, never edited by
hand, so the mobile team's code generators always see what the server serves."""

from __future__ import annotations

from pathlib import Path

from api.graphql.schema import build_schema
from core.settings import Settings

PUBLISHED_SCHEMA = Path(__file__).resolve().parent.parent / "clients" / "schema.graphql"


def schema_sdl(settings: Settings) -> str:
    """The SDL of the served schema (the settings only tune limits, never the types)."""
    return build_schema(settings).as_str() + "\n"
