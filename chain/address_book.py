"""Where the project's contracts live on a chain: a small JSON file per chain id."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel

from core.settings import Settings


class AddressBook(BaseModel):
    chain_id: int
    forwarder: str
    ovpp_token: str
    stablecoin: str
    registry: str | None = None
    rewards_distributor: str | None = None
    deployed_at_block: int | None = None

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(self.model_dump_json(indent=2) + "\n")
        os.replace(temporary, path)

    @classmethod
    def load(cls, path: Path) -> AddressBook | None:
        if not path.exists():
            return None
        return cls.model_validate(json.loads(path.read_text()))


def address_book_path(settings: Settings, chain_id: int) -> Path:
    return settings.address_book or settings.data_dir / f"addresses-{chain_id}.json"


def resolve_addresses(settings: Settings, chain_id: int) -> AddressBook | None:
    """The address book, with addresses from configuration taking precedence (real chains)."""
    book = AddressBook.load(address_book_path(settings, chain_id))
    overrides = {
        "forwarder": settings.forwarder_address,
        "ovpp_token": settings.ovpp_token_address,
        "stablecoin": settings.stablecoin_address,
        "registry": settings.registry_address,
        "rewards_distributor": settings.rewards_distributor_address,
    }
    if book is None:
        optional = ("registry", "rewards_distributor")
        if not all(value for key, value in overrides.items() if key not in optional):
            return None
        return AddressBook(chain_id=chain_id, **overrides)  # type: ignore[arg-type]
    return book.model_copy(update={key: value for key, value in overrides.items() if value})
