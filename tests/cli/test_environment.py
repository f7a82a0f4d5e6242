"""OVPP_ENVIRONMENT has no silent default, and production refuses development stand-ins.

A deployment that forgets OVPP_ENVIRONMENT used to run as development: GraphiQL on, /metrics
open, the development provider trusted, demo data written to the chain. Now nothing starts
until it is set (``make run`` sets development), and a production ``serve`` names everything
it lacks (a key-encryption key, a metrics token) or must not have (demo data, public
development secrets, plain-http issuers) before it starts anything.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from core.defaults import DEV_TENANT_SLUG, LOCAL_STRIPE_WEBHOOK_SECRET
from core.errors import ConfigurationError
from core.production import require_production_ready
from core.settings import REPO_ROOT, load_settings
from tests.support.ports import free_port
from wallet.kms import LocalKeyEncryptionKey

CLI = Path(sys.executable).with_name("ovpp-wallet")
HTTPS_UTILITY = {
    "slug": "bay-power",
    "name": "Bay Power",
    "issuer": "https://login.baypower.example",
    "audience": "https://wallet.baypower.example",
}
READY = {
    "kek": LocalKeyEncryptionKey.generate_base64(),
    "metrics_token": "metrics-scraper-0123456789",
    "tenants": [HTTPS_UTILITY],
}


@pytest.fixture
def no_outside_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only what each test gives: no OVPP_* variable, no .env file."""
    for name in list(os.environ):
        if name.startswith("OVPP_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def serve(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("OVPP_")}
    env.update(
        OVPP_DATA_DIR=str(tmp_path / "data"),
        OVPP_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'ovpp.db'}",
        # should serve get past its checks, it must not start a chain
        OVPP_START_LOCAL_CHAIN="false",
        OVPP_RPC_URL=f"http://127.0.0.1:{free_port()}",
        OVPP_PORT=str(free_port()),
    )
    env.update({f"OVPP_{name.upper()}": value for name, value in settings.items()})
    return subprocess.run(
        [str(CLI), "serve"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )


@pytest.mark.usefixtures("no_outside_settings")
def test_settings_without_an_environment_are_refused_by_name() -> None:
    with pytest.raises(ConfigurationError, match="OVPP_ENVIRONMENT: is required"):
        load_settings()


def test_serve_without_an_environment_refuses_to_start(tmp_path: Path) -> None:
    result = serve(tmp_path)

    assert result.returncode != 0
    assert "OVPP_ENVIRONMENT: is required" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists(), "nothing may start before the environment is set"


def test_make_run_is_development_explicitly() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    run = re.search(r"^run:.*\n\t(.*)$", makefile, re.MULTILINE)
    assert run is not None
    assert run.group(1).startswith("OVPP_ENVIRONMENT=development ")


def test_production_serve_names_everything_it_lacks(tmp_path: Path) -> None:
    demo = {**HTTPS_UTILITY, "slug": DEV_TENANT_SLUG}
    result = serve(
        tmp_path,
        environment="production",
        tenants=json.dumps([demo]),
        stripe_webhook_secret=LOCAL_STRIPE_WEBHOOK_SECRET,
    )

    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    for missing in (
        "OVPP_KEK is required in production",
        "OVPP_METRICS_TOKEN is required in production",
        f"OVPP_TENANTS names the development provider's utility, demo data: {DEV_TENANT_SLUG}",
        "OVPP_STRIPE_WEBHOOK_SECRET is the public development stand-in",
    ):
        assert missing in result.stderr, result.stderr
    assert LOCAL_STRIPE_WEBHOOK_SECRET not in result.stderr
    assert not (tmp_path / "data" / "kek.b64").exists(), "production must never generate a key"


@pytest.mark.usefixtures("no_outside_settings")
def test_production_with_what_it_needs_is_ready() -> None:
    require_production_ready(load_settings(environment="production", chain="odyssey", **READY))
    require_production_ready(load_settings(environment="development"))  # nothing required


@pytest.mark.usefixtures("no_outside_settings")
def test_production_refuses_to_serve_with_the_operators_key() -> None:
    """The registry admin, forwarder owner and token minter key is the operator commands'
    alone: a serving process that holds it is refused, naming the variable, not the key."""
    key = "0x" + "11" * 32
    settings = load_settings(
        environment="production", chain="odyssey", deployer_private_key=key, **READY
    )

    with pytest.raises(ConfigurationError, match="OVPP_DEPLOYER_PRIVATE_KEY must not be set") as e:
        require_production_ready(settings)
    assert key.removeprefix("0x") not in str(e.value)


@pytest.mark.usefixtures("no_outside_settings")
def test_development_never_runs_on_mainnet() -> None:
    """Development trusts the embedded provider and plain-http issuers: never with real value."""
    with pytest.raises(ConfigurationError, match="development never runs on odyssey"):
        load_settings(environment="development", chain="odyssey", rpc_url="https://rpc.example")
    load_settings(environment="development", chain="odyssey-testnet", rpc_url="https://rpc.example")


@pytest.mark.usefixtures("no_outside_settings")
@pytest.mark.parametrize("chain", ["odyssey", "odyssey-testnet", "custom"])
def test_production_refuses_a_plain_http_issuer(chain: str) -> None:
    plain = {**HTTPS_UTILITY, "slug": "plain-power", "issuer": "http://login.plain.example"}

    with pytest.raises(ConfigurationError, match=r"OVPP_TENANTS: .*https:// \(not: plain-power\)"):
        load_settings(environment="production", chain=chain, **{**READY, "tenants": [plain]})

    # development (a local provider), and the local chain (the tests' and benchmarks' test
    # bed, where nothing is of value), accept one
    if chain != "odyssey":  # development never runs on mainnet
        load_settings(environment="development", chain=chain, tenants=[plain])
    load_settings(environment="production", chain="local", **{**READY, "tenants": [plain]})


@pytest.mark.usefixtures("no_outside_settings")
@pytest.mark.parametrize(
    ("tenant", "message"),
    [
        ({"issuer": "urn:ovpp:platform"}, "an issuer is an https:// URL"),
        ({"slug": "ovpp-platform"}, "system tenant"),
    ],
)
def test_configuration_cannot_name_the_system_tenant(tenant: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_settings(environment="development", tenants=[{**HTTPS_UTILITY, **tenant}])
