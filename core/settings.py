"""The one settings object. Every setting is read from the environment (prefix ``OVPP_``)
or a ``.env`` file once, at start-up; nothing else in the code reads ``os.environ``.

The README's configuration table is generated from the field descriptions here
(``ovpp-wallet config --markdown``), so a setting is documented where it is declared.
"""

from __future__ import annotations

from functools import cached_property

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)

from core.defaults import LOCAL_STRIPE_API_KEY, LOCAL_STRIPE_WEBHOOK_SECRET
from core.errors import ConfigurationError
from core.program_server_settings import ProgramServerSettings
from core.rewards_settings import RewardsSettings
from core.settings_base import REPO_ROOT, BaseFields
from core.tenant_config import is_origin

__all__ = ["REPO_ROOT", "Settings", "load_settings"]


class Settings(BaseFields, ProgramServerSettings, RewardsSettings):
    """Every setting: ``BaseFields``' (where it runs, chain, trust, relayer, web app), then the
    onramp's and the API's, the program server's (``ProgramServerSettings``), and the values
    resolved from them."""

    model_config = BaseFields.model_config  # the prefix and the rest, over the mixin's defaults

    onramp_currency: str = Field(
        "usd", description="The fiat currency card payments are made in (two decimal places)."
    )
    onramp_price_ovpp: str = Field(
        "0.10", description="Onramp price: fiat per OVPP a card buyer pays, before the fee."
    )
    onramp_price_stablecoin: str = Field(
        "1", description="Onramp price: fiat per stablecoin token, before the fee."
    )
    onramp_fee_bps: int = Field(
        300, description="Onramp fee on the fiat amount, in basis points (card processing)."
    )
    onramp_fee_fixed: str = Field(
        "0.30", description="Onramp fee per payment, in fiat, added to the percentage."
    )
    onramp_min_fiat: str = Field(
        "0.50", description="Smallest card payment, in fiat (Stripe's minimum for USD)."
    )
    onramp_max_fiat: str = Field("1000", description="Largest card payment, in fiat.")
    onramp_hold_hours: int = Field(
        72,
        ge=0,
        description="Tokens bought by card are held this long after delivery: they pay "
        "enrollment and gas fees and go to this backend's wallets, but cannot be sent to any "
        "other address until then (0: no hold). A chargeback then still finds them.",
    )
    onramp_customer_limit_day: str = Field(
        "1000",
        description="Most a customer may pay by card in any 24 hours, in fiat (payments "
        "awaiting their card count; canceled or wholly refunded ones do not).",
    )
    onramp_customer_limit_30_days: str = Field(
        "3000", description="Most a customer may pay by card in any 30 days, in fiat."
    )
    onramp_quote_ttl_seconds: int = Field(
        600, description="How long an onramp quote (price and fee) can be paid at."
    )
    onramp_processor_in_serve: bool = Field(
        True,
        description="Run the onramp processor (Stripe events → token deliveries) inside `serve` "
        "(else run `ovpp-wallet onramp process`).",
    )
    onramp_processor_poll_seconds: float = Field(
        1.0,
        description="How often the onramp processor looks for stored events and deliveries "
        "to advance (a webhook also wakes it at once).",
    )
    onramp_reread_after_seconds: int = Field(
        300,
        ge=10,
        description="A card payment still awaiting its card this long after it was made (or "
        "last re-read) is re-read from Stripe by the onramp processor and moved as its webhook "
        "would have moved it: a payment made behind a lost webhook is delivered anyway.",
    )
    onramp_reread_max_age_hours: int = Field(
        72,
        ge=1,
        description="For how long after it was made an unpaid card payment keeps being re-read "
        "(every `OVPP_ONRAMP_REREAD_AFTER_SECONDS`); an older one is left to `ovpp-wallet "
        "onramp reconcile`.",
    )
    card_enrollment_payment_minutes: int = Field(
        60,
        ge=1,
        description="A card-paid enrollment whose fee is still unpaid this long after its card "
        "payment was opened is canceled by the onramp processor (the PaymentIntent at Stripe, "
        "then the enrollment FAILED), so its device is free to enroll again.",
    )
    onramp_treasury_stock_ovpp: str = Field(
        "1000000",
        description="Local chain only: OVPP minted once into the onramp treasury wallet, the "
        "stock card buyers are served from.",
    )
    onramp_treasury_stock_stablecoin: str = Field(
        "1000000",
        description="Local chain only: stablecoin minted once into the onramp treasury wallet.",
    )

    indexer_in_serve: bool = Field(
        True, description="Run the chain indexer inside `serve` (else run `ovpp-wallet indexer`)."
    )
    indexer_start_block: int = Field(
        0,
        ge=0,
        description="The first block the indexer reads, when it has no cursor yet (later it "
        "resumes from its cursor and this has no effect). On a real chain: the block the tokens "
        "were deployed in.",
    )
    indexer_block_range: int = Field(
        2000,
        ge=1,
        description="Most blocks one `eth_getLogs` reads; halved while the node refuses a range "
        "(too many results), grown back after.",
    )
    indexer_poll_seconds: float = Field(
        1.0, gt=0, description="How often a caught-up indexer asks the node for new blocks."
    )
    indexer_reorg_window: int = Field(
        128,
        ge=1,
        description="Recent blocks whose hashes the indexer keeps to find the fork point of a "
        "reorganisation; a deeper one is rolled back this far (and logged as an error).",
    )
    indexer_lease_seconds: float = Field(
        30.0,
        gt=0,
        description="Indexers sharing a database take turns by a lease: one reads, the others "
        "wait; a lease not renewed this long (its process was killed) passes to another.",
    )
    indexer_backoff_max_seconds: float = Field(
        30.0, gt=0, description="Longest wait between the indexer's retries while the node fails."
    )
    app_webhooks_in_serve: bool = Field(
        True,
        description="Run the app webhooks' delivery worker inside `serve` (else run "
        "`ovpp-wallet app-webhooks`). Several may share PostgreSQL.",
    )
    app_webhook_poll_seconds: float = Field(
        1.0, gt=0, description="How often the delivery worker looks for due webhook deliveries."
    )
    app_webhook_max_attempts: int = Field(
        8,
        ge=1,
        le=30,
        description="Attempts at delivering one event to one endpoint before it is FAILED.",
    )
    app_webhook_retry_base_seconds: float = Field(
        15.0,
        gt=0,
        description="Wait after a webhook's first failed attempt; each later wait is 4 times "
        "the one before (±20 % jitter), at most `OVPP_APP_WEBHOOK_RETRY_MAX_SECONDS`. With the "
        "defaults, 8 attempts span about 16 hours.",
    )
    app_webhook_retry_max_seconds: float = Field(
        36_000.0, gt=0, description="Longest wait between two attempts of a webhook delivery."
    )
    app_webhook_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=60,
        description="Time a webhook endpoint has to answer an attempt (connecting included); "
        "no answer is a failed attempt.",
    )

    indexer_stale_blocks: int = Field(
        12,
        ge=0,
        description="A wallet's indexed balances and activity are `stale` (and `/readyz` says "
        "so) while the index is more than this many blocks behind the node's head.",
    )
    admin_registry_changes_per_hour: int = Field(
        30,
        ge=1,
        description="Registry changes (registerUtility, upsertProgram) one utility may ask in "
        "any hour; the operator pays their gas, so more are refused as RATE_LIMITED.",
    )
    graphql_max_depth: int = Field(12, description="Maximum query depth.")
    graphql_max_tokens: int = Field(2000, description="Maximum tokens in one GraphQL document.")
    graphql_max_aliases: int = Field(20, description="Maximum aliases in one GraphQL document.")
    graphql_introspection: bool | None = Field(
        None,
        description="Answer introspection (`__schema`, `__type`). Unset: on in development, off "
        "in production (the schema is published in `clients/schema.graphql`).",
    )
    graphql_max_body_bytes: int = Field(
        1_048_576,
        gt=0,
        description="Largest `POST /graphql` body, in bytes: a larger one is refused with 413 "
        "as its `Content-Length` says so, or as soon as its chunks add up to more. Also the "
        "largest graphql-transport-ws message: a larger one closes the socket with 1009.",
    )
    stripe_webhook_max_body_bytes: int = Field(
        524_288,
        gt=0,
        description="Largest `POST /webhooks/stripe` body, in bytes (Stripe's events are a few "
        "kB), refused like an oversized GraphQL body.",
    )
    public_url: str | None = Field(
        None,
        description="The origin customers reach this backend at, such as "
        "`https://wallet.example.com`: the web app's GraphQL URL and sign-in redirect URI in "
        "`/app/config.json` (never taken from a request's `Host` header). Unset: "
        "`http://127.0.0.1:<port>` in development; elsewhere `/app/config.json` answers 503.",
    )
    graphql_ws_max_subscriptions: int = Field(
        10,
        ge=1,
        description="Subscriptions one graphql-transport-ws connection may run at once; one "
        "more is refused with an `error` message (the web app opens a socket per subscription).",
    )
    metrics_token: SecretStr | None = Field(
        None,
        description="Bearer token a Prometheus scraper sends to read `/metrics` "
        "(`Authorization: Bearer <token>`; at least 16 characters). Without it `/metrics` "
        "answers in development only.",
    )
    rpc_timeout_seconds: float = Field(10.0, description="Timeout of one JSON-RPC request.")
    log_level: str = Field("INFO", description="Python log level.")

    @field_validator("metrics_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        # An empty value (an unset variable in a template) would let `Bearer ` through.
        if value is not None and len(value.get_secret_value().strip()) < 16:
            raise ValueError("must be at least 16 characters (or unset)")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_origin(cls, value: str | None) -> str | None:
        # Only an origin: the web app appends its own paths to it.
        if value is None:
            return None
        if not is_origin(value):
            raise ValueError(f"{value!r} is not an origin like https://wallet.example.com")
        return value.rstrip("/")

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


def load_settings(**overrides: object) -> Settings:
    """Read the settings once; ``overrides`` win over the environment (tests use this). A bad
    value is a ``ConfigurationError`` naming each variable, never echoing what was given:
    it may be a secret, and the message ends up in terminals and logs."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        problems = []
        for problem in error.errors(include_input=False, include_url=False):
            where, *inside = problem["loc"]
            name = f"OVPP_{str(where).upper()}"
            if inside:
                name += f" ({'.'.join(str(part) for part in inside)})"
            message = problem["msg"].removeprefix("Value error, ")
            if problem["type"] == "missing" and not inside:
                message = "is required" + MISSING_HINTS.get(str(where), "")
            problems.append(f"{name}: {message}")
        raise ConfigurationError("configuration error: " + "; ".join(problems)) from None


MISSING_HINTS = {
    "environment": " (development or production; there is no default, `make run` sets development)",
}
