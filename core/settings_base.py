"""The settings every process reads first: where it runs (environment, network, data),
which chain and keys, whom it trusts, the relayer's and the web app's knobs. ``core.settings``
adds the onramp's, the API's and the resolved values; import ``Settings`` from there."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.tenant_config import TenantConfig, is_origin

REPO_ROOT = Path(__file__).resolve().parent.parent


class BaseFields(BaseSettings):
    """The first half of ``Settings``' fields, in the order the configuration table lists them."""

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
    database_pool_size: int = Field(
        20,
        description="PostgreSQL connections each process keeps open at most (opened as needed, "
        "then kept; a request waits for one when all are busy).",
    )

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
    rewards_distributor_address: str | None = Field(
        None,
        description="RewardsDistributor address (event rewards against Merkle roots); overrides "
        "the address book (real chains).",
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

    @field_validator("previous_keks", mode="before")
    @classmethod
    def _split_keks(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
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
