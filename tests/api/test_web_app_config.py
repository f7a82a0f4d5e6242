"""What the web app at /app is told outside development (``/app/config.json``): the utility's
provider with the operator's client id, and Stripe.js with the publishable key only when card
payments are configured. A secret Stripe key is never accepted where browsers would see it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from pydantic import ValidationError
from starlette.applications import Starlette

from api.web_app import web_app_routes
from cli.main import main
from core.settings import Settings

UTILITY = {
    "slug": "bay-power",
    "name": "Bay Power",
    "issuer": "https://login.baypower.example",
    "audience": "https://wallet.baypower.example",
}
CARD_PAYMENTS = {
    "stripe_api_key": "sk_live_secret_never_shown",
    "stripe_webhook_secret": "whsec_live_secret_never_shown",
}


pytestmark = pytest.mark.usefixtures("no_outside_settings")


PUBLIC_URL = "https://wallet.baypower.example"


async def get_config(*, host: str = "wallet.baypower.example", **settings: Any) -> httpx.Response:
    settings = {"environment": "production", "public_url": PUBLIC_URL, **settings}
    app = Starlette(routes=web_app_routes(Settings(_env_file=None, tenants=[UTILITY], **settings)))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=f"https://{host}") as client:
        return await client.get("/app/config.json")


async def served_config(**settings: Any) -> dict[str, Any]:
    response = await get_config(**settings)
    assert response.status_code == 200
    return response.json()


async def test_production_uses_the_operators_client_id_and_publishable_key() -> None:
    config = await served_config(
        web_app_client_id="baypower-web",
        stripe_publishable_key="pk_live_51Public",
        **CARD_PAYMENTS,
    )

    assert config["issuer"] == UTILITY["issuer"]
    assert config["audience"] == UTILITY["audience"]
    assert config["clientId"] == "baypower-web"
    assert config["redirectUri"] == "https://wallet.baypower.example/app/callback"
    assert config["stripeJsUrl"] == "https://js.stripe.com/v3/"
    assert config["stripePublishableKey"] == "pk_live_51Public"
    assert "secret_never_shown" not in str(config)


@pytest.mark.parametrize(
    "settings",
    [{**CARD_PAYMENTS}, {"stripe_publishable_key": "pk_live_51Public"}],
    ids=["no publishable key", "no card payments configured"],
)
async def test_without_both_halves_of_card_payments_the_buy_screen_is_off(
    settings: dict[str, Any],
) -> None:
    config = await served_config(**settings)

    assert config["stripePublishableKey"] is None
    assert config["clientId"] == "ovpp-dev"  # the default client id


@pytest.mark.parametrize("key", ["sk_live_51Secret", "rk_live_51Restricted", "51NoPrefix"])
def test_a_key_that_is_not_publishable_is_refused_by_name(
    key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValidationError, match="publishable key"):
        Settings(stripe_publishable_key=key)

    # The CLI says which variable is wrong, without a traceback and without echoing the key.
    monkeypatch.setenv("OVPP_STRIPE_PUBLISHABLE_KEY", key)
    result = CliRunner().invoke(main, ["config"])
    assert result.exit_code == 1
    assert "OVPP_STRIPE_PUBLISHABLE_KEY" in result.output
    assert "Traceback" not in result.output
    assert key not in result.output


async def test_the_app_is_pointed_at_the_configured_url_never_at_the_host_header() -> None:
    config = await served_config(host="attacker.example")

    assert config["graphqlUrl"] == f"{PUBLIC_URL}/graphql"
    assert config["redirectUri"] == f"{PUBLIC_URL}/app/callback"
    assert "attacker" not in str(config)


async def test_without_a_public_url_the_config_is_refused_outside_development() -> None:
    response = await get_config(public_url=None)

    assert response.status_code == 503
    assert "OVPP_PUBLIC_URL" in response.json()["error"]


async def test_development_defaults_to_the_local_server() -> None:
    response = await get_config(
        host="attacker.example", environment="development", public_url=None, port=8123
    )
    config = response.json()

    assert config["graphqlUrl"] == "http://127.0.0.1:8123/graphql"
    assert config["redirectUri"] == "http://127.0.0.1:8123/app/callback"


@pytest.mark.parametrize(
    "url",
    [
        "wallet.example",
        "https://wallet.example/app",
        "https://wallet.example?x=1",
        "ftp://w.example",
    ],
)
def test_a_public_url_must_be_an_origin(url: str) -> None:
    with pytest.raises(ValidationError, match="not an origin"):
        Settings(_env_file=None, public_url=url)
