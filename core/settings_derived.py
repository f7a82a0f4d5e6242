"""What the settings imply: the values ``Settings`` resolves from its fields (defaults that
depend on the environment or on other settings). A mixin of ``Settings``, kept apart so the
declarations stay in one file of their own size."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from core.defaults import LOCAL_STRIPE_API_KEY, LOCAL_STRIPE_WEBHOOK_SECRET

if TYPE_CHECKING:
    from pathlib import Path

    from pydantic import SecretStr


class DerivedSettings:
    if TYPE_CHECKING:
        environment: str
        database_url: str | None
        data_dir: Path
        rpc_url: str | None
        chain: str
        anvil_port: int
        graphql_introspection: bool | None
        public_url: str | None
        port: int
        dev_oidc_port: int
        stripe_api_base: str | None
        localstripe_port: int
        stripe_api_key: SecretStr | None
        stripe_webhook_secret: SecretStr | None

    @property
    def is_development(self) -> bool:
        return self.environment == "development"

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'ovpp.db'}"

    @cached_property
    def resolved_rpc_url(self) -> str:
        if self.rpc_url:
            return self.rpc_url
        if self.chain == "local":
            return f"http://127.0.0.1:{self.anvil_port}"
        raise ValueError(f"OVPP_RPC_URL is required for the {self.chain!r} chain profile")

    @property
    def resolved_graphql_introspection(self) -> bool:
        if self.graphql_introspection is not None:
            return self.graphql_introspection
        return self.is_development

    @property
    def resolved_public_url(self) -> str | None:
        """Where customers reach this backend; ``None`` outside development until it is set."""
        if self.public_url:
            return self.public_url
        return f"http://127.0.0.1:{self.port}" if self.is_development else None

    @property
    def dev_issuer(self) -> str:
        return f"http://127.0.0.1:{self.dev_oidc_port}"

    @property
    def resolved_stripe_api_base(self) -> str:
        if self.stripe_api_base:
            return self.stripe_api_base.rstrip("/")
        if self.is_development:
            return f"http://127.0.0.1:{self.localstripe_port}"
        return "https://api.stripe.com"

    @property
    def resolved_stripe_api_key(self) -> str | None:
        if self.stripe_api_key is not None:
            return self.stripe_api_key.get_secret_value()
        return LOCAL_STRIPE_API_KEY if self.is_development else None

    @property
    def resolved_stripe_webhook_secret(self) -> str | None:
        if self.stripe_webhook_secret is not None:
            return self.stripe_webhook_secret.get_secret_value()
        return LOCAL_STRIPE_WEBHOOK_SECRET if self.is_development else None

    @property
    def onramp_enabled(self) -> bool:
        """Card payments need both a Stripe key and the webhook's signing secret."""
        return bool(self.resolved_stripe_api_key and self.resolved_stripe_webhook_secret)
