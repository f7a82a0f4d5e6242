"""The one settings object. Every setting is read from the environment (prefix ``OVPP_``)
or a ``.env`` file once, at start-up; nothing else in the code reads ``os.environ``.

The README's configuration table is generated from the field descriptions here
(``ovpp-wallet config --markdown``), so a setting is documented where it is declared.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.defaults import LOCAL_STRIPE_API_KEY, LOCAL_STRIPE_WEBHOOK_SECRET
from core.errors import ConfigurationError
from core.program_server_settings import ProgramServerSettings
from core.tenant_config import TenantConfig, is_origin

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(ProgramServerSettings, BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="OVPP_", env_file=".env", extra="ignore", frozen=True
    )

    environment: Literal["development", "production"] = Field(
        description="Required, no default (`make run` sets `development`). `development` turns "
        "on GraphiQL, the embedded OpenID Provider and demo data, and trusts `http://` issuers; "
        "`production` turns them off, and `serve` then needs an explicit key-encryption key, a "
        "metrics token and no development stand-ins.",
    )
    host: str = Field("127.0.0.1", description="Address the HTTP server binds to.")
    port: int = Field(8000, description="Port of the HTTP server (`/graphql`, `/healthz`).")
    data_dir: Path = Field(
        REPO_ROOT / "var",
        description="Where the embedded default keeps its SQLite file, chain state, keys and logs.",
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy async URL. Default: SQLite file `<data_dir>/ovpp.db`. "
        "PostgreSQL: `postgresql+asyncpg://user@host:5432/db`.",
    )
    database_pool_size: int = Field(10, description="PostgreSQL connection pool size.")

    chain: Literal["local", "odyssey-testnet", "odyssey", "custom"] = Field(
        "local",
        description="Chain profile: `local` (anvil, 31337), `odyssey-testnet` (131313), "
        "`odyssey` (153153) or `custom` (give `OVPP_RPC_URL` and `OVPP_CHAIN_ID`).",
    )
    rpc_url: str | None = Field(
        None,
        description="JSON-RPC endpoint. Default for `local`: `http://127.0.0.1:<anvil_port>`; "
        "required for the other profiles.",
    )
    chain_id: int | None = Field(
        None, description="Chain id; required for `custom`, checked against the node always."
    )
    anvil_port: int = Field(8545, description="Port of the local anvil that `serve` starts.")
    start_local_chain: bool = Field(
        True,
        description="With the `local` profile, `serve` starts anvil (state persisted in "
        "`<data_dir>/anvil-state.json`) unless a node already answers at `rpc_url`.",
    )
    address_book: Path | None = Field(
        None,
        description="JSON file with the deployed contract addresses. Default: "
        "`<data_dir>/addresses-<chain_id>.json`, written by `ovpp-wallet deploy`.",
    )
    ovpp_token_address: str | None = Field(
        None, description="OVPP token address; overrides the address book (real chains)."
    )
    stablecoin_address: str | None = Field(
        None, description="USD stablecoin address; overrides the address book (real chains)."
    )
    forwarder_address: str | None = Field(
        None, description="ERC-2771 forwarder address; overrides the address book."
    )
    registry_address: str | None = Field(
        None, description="OpenVPP registry address; overrides the address book (real chains)."
    )
    deployer_private_key: SecretStr | None = Field(
        None,
        description="Key that deploys contracts and mints demo funds. Default on `local` only: "
        "anvil's first well-known development account.",
    )

    vendor_private_key: SecretStr | None = Field(
        None,
        description="A device vendor's key for `ovpp-wallet registry add-model` (pays its own "
        "gas). Default on `local` only: anvil's third development account.",
    )

    kek: SecretStr | None = Field(
        None,
        description="Key-encryption key that wraps every wallet's data key: 32 random bytes, "
        "base64. Required in production. In development a key is generated once into "
        "`<data_dir>/kek.b64` (mode 0600).",
    )
    previous_keks: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated older key-encryption keys still accepted for unwrapping, "
        "during a rotation (`ovpp-wallet keys rewrap`).",
    )

    tenants: Annotated[list[TenantConfig], NoDecode] = Field(
        default_factory=list,
        description="JSON list of trusted utilities: "
        '`[{"slug","name","issuer","audience","admin_client_ids"}]`. Set at every start: a '
        "utility no longer listed is no longer trusted (its rows stay). Outside development an "
        "issuer must be `https://` (except on the `local` chain, a test bed). In development the "
        "embedded provider's tenant is added, its client allowed to administer it.",
    )
    jwks_cache_seconds: int = Field(
        600, description="How long a utility's JWKS is cached; an unknown `kid` re-fetches."
    )
    jwt_leeway_seconds: int = Field(30, description="Clock skew allowed on exp/nbf/iat.")
    dev_oidc_port: int = Field(9400, description="Port of the embedded development provider.")
    dev_audience: str = Field(
        "https://wallet.ovpp.local",
        description="Audience (resource indicator) of access tokens from the embedded provider.",
    )

    treasury_address: str | None = Field(
        None,
        description="Where relayer fees in OVPP or stablecoin go. Default on `local`: anvil's "
        "second development account. Required on real chains.",
    )
    relayer_keys: int = Field(
        1, description="How many relayer keys share the broadcasting (created and funded on start)."
    )
    relayer_in_serve: bool = Field(
        True, description="Run the relayer worker inside `serve` (else run `ovpp-wallet relayer`)."
    )
    relayer_confirmations: int = Field(1, description="Blocks until a mined transaction is final.")
    relayer_poll_seconds: float = Field(0.05, description="Worker loop interval when idle.")
    relayer_round_pause_seconds: float = Field(
        0.05,
        ge=0,
        description="Pause after a round that had work, so the next takes a larger batch: "
        "less CPU per transaction, up to this much more latency per stage (0: none).",
    )
    relayer_stuck_seconds: float = Field(
        30.0, description="A submitted transaction with no receipt this long gets a fee bump."
    )
    relayer_fee_bump_percent: int = Field(15, description="Fee bump per resubmission (>= 10).")
    relayer_max_fee_per_gas_wei: int = Field(
        500 * 10**9, description="Cap on maxFeePerGas after bumps (still room for a replacement)."
    )
    relayer_low_balance_wei: int = Field(
        10**17, description="A relayer key below this native balance makes /readyz report it."
    )
    relayer_fund_wei: int = Field(
        100 * 10**18, description="Local chain only: native funds given to each new relayer key."
    )
    quote_ttl_seconds: int = Field(120, description="How long a fee quote can be used.")
    fee_markup_bps: int = Field(1000, description="Markup on the gas cost, in basis points.")
    price_native_usd: str = Field("25", description="Fixed oracle: USD per native token.")
    price_ovpp_usd: str = Field("0.10", description="Fixed oracle: USD per OVPP.")
    price_stablecoin_usd: str = Field("1", description="Fixed oracle: USD per stablecoin.")
    price_max_age_seconds: int = Field(300, description="An older oracle price is refused.")
    forward_request_ttl_seconds: int = Field(
        24 * 3600, description="Deadline of the customer's signed forward request."
    )
    default_daily_limit_ovpp: str = Field(
        "100000", description="Default daily spend limit per wallet in OVPP (token units)."
    )
    default_daily_limit_stablecoin: str = Field(
        "10000", description="Default daily spend limit per wallet in stablecoin (token units)."
    )

    stripe_api_key: SecretStr | None = Field(
        None,
        description="Stripe secret key (`sk_live_…` or `sk_test_…`). Default in development: a "
        "placeholder the embedded localstripe accepts. Without it (production) the card onramp "
        "is off.",
    )
    stripe_api_base: str | None = Field(
        None,
        description="Stripe API base URL. Default: `http://127.0.0.1:<localstripe_port>` (the "
        "embedded localstripe) in development, `https://api.stripe.com` in production.",
    )
    stripe_webhook_secret: SecretStr | None = Field(
        None,
        description="Signing secret (`whsec_…`) of the webhook endpoint `/webhooks/stripe`. "
        "Default in development: a fixed secret `serve` gives the embedded localstripe.",
    )
    stripe_publishable_key: str | None = Field(
        None,
        description="Stripe publishable key (`pk_live_…` or `pk_test_…`) that the web app at "
        "`/app` gives Stripe.js for its card form. Public by design; a secret or restricted key "
        "(`sk_…`, `rk_…`) is refused. Default in development: a placeholder the embedded "
        "localstripe accepts. Without it (production) the web app's Buy screen is off.",
    )
    web_app_client_id: str = Field(
        "ovpp-dev",
        description="OAuth client id the web app at `/app` signs in with outside development: "
        "the utility's provider must know it, as a public client (PKCE, no secret) with the "
        "redirect URI `<origin>/app/callback`. Development always uses the embedded provider's "
        "`ovpp-dev`.",
    )
    web_app_connect_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated origins (`https://host[:port]`) the web app at `/app` may "
        "also send requests to, beyond its own, the sign-in provider's issuer and Stripe: its "
        "Content-Security-Policy `connect-src`. Needed when the provider's token or revocation "
        "endpoint is on another origin than its issuer (Google's are on "
        "`https://oauth2.googleapis.com`).",
    )
    localstripe_port: int = Field(
        8420,
        description="Development only: port of the local Stripe API (localstripe) that `serve` "
        "starts, with its state in `<data_dir>/localstripe.pickle`, unless one already answers.",
    )
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
    onramp_treasury_stock_ovpp: str = Field(
        "1000000",
        description="Local chain only: OVPP minted once into the onramp treasury wallet, the "
        "stock card buyers are served from.",
    )
    onramp_treasury_stock_stablecoin: str = Field(
        "1000000",
        description="Local chain only: stablecoin minted once into the onramp treasury wallet.",
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
        "as its `Content-Length` says so, or as soon as its chunks add up to more.",
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

    @field_validator("previous_keks", mode="before")
    @classmethod
    def _split_keks(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("metrics_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        # An empty value (an unset variable in a template) would let `Bearer ` through.
        if value is not None and len(value.get_secret_value().strip()) < 16:
            raise ValueError("must be at least 16 characters (or unset)")
        return value

    @field_validator("stripe_publishable_key")
    @classmethod
    def _publishable_only(cls, value: str | None) -> str | None:
        # It is sent to every browser: a secret key here would be published.
        if value is not None and not value.startswith("pk_"):
            raise ValueError(
                "takes the publishable key (pk_…), which browsers see; never a secret (sk_…) "
                "or restricted (rk_…) key"
            )
        return value

    @field_validator("web_app_connect_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("web_app_connect_origins")
    @classmethod
    def _origins_only(cls, values: list[str]) -> list[str]:
        # Each becomes a word of a header: nothing but an origin may get there.
        for value in values:
            if not is_origin(value):
                raise ValueError(f"{value!r} is not an origin like https://login.example.com")
        return [value.rstrip("/") for value in values]

    @field_validator("public_url")
    @classmethod
    def _public_origin(cls, value: str | None) -> str | None:
        # Only an origin: the web app appends its own paths to it.
        if value is None:
            return None
        if not is_origin(value):
            raise ValueError(f"{value!r} is not an origin like https://wallet.example.com")
        return value.rstrip("/")

    @field_validator("chain")
    @classmethod
    def _no_development_on_mainnet(cls, value: str, info: ValidationInfo) -> str:
        # development trusts the embedded provider (whose users anyone can create) and http://
        # issuers, and seeds demo data: never with real value.
        if value == "odyssey" and info.data.get("environment") == "development":
            raise ValueError("development never runs on odyssey (mainnet): use production")
        return value

    @field_validator("tenants", mode="before")
    @classmethod
    def _parse_tenants(cls, value: object) -> object:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else []
        return value

    @field_validator("tenants")
    @classmethod
    def _trusted_issuers_only(
        cls, values: list[TenantConfig], info: ValidationInfo
    ) -> list[TenantConfig]:
        # JWKS over plain http can be swapped by anyone on the path. Tests and benchmarks run
        # production mode on the local anvil with loopback issuers: nothing of value is there.
        insecure = [t.slug for t in values if not t.issuer.startswith("https://")]
        outside_development = info.data.get("environment") != "development"
        if insecure and outside_development and info.data.get("chain") != "local":
            raise ValueError(
                "outside development every issuer must be https:// (not: "
                + ", ".join(insecure)
                + ")"
            )
        slugs = [t.slug for t in values]
        if len(set(slugs)) != len(slugs):
            raise ValueError("each utility's slug appears once")
        return values

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
