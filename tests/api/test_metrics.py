"""``/metrics``: what it shows is what the database and the chain hold at that moment, the
process counters count what the process answered, and outside development only a holder of
``OVPP_METRICS_TOKEN`` may read it."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import update
from sqlmodel import func, select

from api.app import create_app
from api.container import Services
from chain.address_book import AddressBook
from chain.deploy import Deployer
from chain.rpc import JsonRpc
from core.db import utc_now
from core.settings import Settings
from identity.models import Tenant
from relayer.models import RelayerKey, RelayStatus, RelayTransaction, Sponsor
from relayer.runner import RunningRelayer
from tests.support.graphql import gql
from tests.support.issuer import TestIssuer
from tests.support.metrics import Samples, scrape, value
from tests.support.ports import free_port
from tests.support.relayer_pause import relayer_paused
from tests.support.transfers import quote, send
from tests.support.utilities import fresh_utility
from tests.support.wallets import ChainReader, FundedCustomer, new_customer, wait_for_status

OVPP = 10**18
USD = 10**6


async def queued_in_database(services: Services) -> int:
    async with services.db.session() as session:
        return (
            await session.execute(
                select(func.count()).where(RelayTransaction.status == RelayStatus.QUEUED.value)
            )
        ).scalar_one()


async def test_the_relayers_backlog_and_keys_are_read_from_the_database_and_the_chain(
    client,
    relayer: RunningRelayer,
    services: Services,
    chain: ChainReader,
    funded_customer: FundedCustomer,
) -> None:
    customer = await funded_customer(ovpp=10 * OVPP, stablecoin=10 * USD)
    recipient = "0x" + uuid.uuid4().hex + uuid.uuid4().hex[:8]
    async with relayer_paused(relayer, services):
        fee_quote = await quote(
            client, customer.token, token="OVPP", to=recipient, amount="1", feeToken="STABLECOIN"
        )
        transaction = await send(
            client,
            customer.token,
            quote_id=fee_quote["id"],
            token="OVPP",
            to=recipient,
            amount="1",
            feeToken="STABLECOIN",
        )
        assert transaction["__typename"] == "Transaction", transaction
        samples = await scrape(client)
        queued = await queued_in_database(services)
        async with services.db.session() as session:
            keys = list((await session.execute(select(RelayerKey))).scalars())

    assert queued >= 1
    assert value(samples, "ovpp_scrape_source_up", source="database") == 1
    assert value(samples, "ovpp_scrape_source_up", source="chain") == 1
    assert value(samples, "ovpp_relay_transactions_waiting", status="QUEUED") == queued
    assert value(samples, "ovpp_relay_oldest_waiting_seconds", status="QUEUED") > 0
    assert keys
    for key in keys:
        labels = {"address": key.address, "slot": str(key.slot)}
        # The relayer was still: nothing it holds moved between the scrape and these reads.
        balance = float(chain.native(key.address))  # float64, as Prometheus carries it
        assert value(samples, "ovpp_relayer_key_balance_wei", **labels) == balance
        assert value(samples, "ovpp_relayer_key_chain_nonce", **labels) == (
            chain.web3.eth.get_transaction_count(key.address, "pending")
        )
        assert value(samples, "ovpp_relayer_key_next_nonce", **labels) == key.next_nonce
        assert value(samples, "ovpp_relayer_key_enabled", **labels) == (1 if key.enabled else 0)
    assert (
        value(samples, "ovpp_relayer_low_balance_threshold_wei")
        == services.settings.relayer_low_balance_wei
    )

    final = await wait_for_status(client, customer.token, transaction["id"])
    assert final["status"] == "CONFIRMED", final
    after = await scrape(client)
    assert value(after, "ovpp_relay_transactions_waiting", status="QUEUED") == (
        await queued_in_database(services)
    )


async def test_a_sponsors_budget_is_shown_as_its_row_holds_it(client, services: Services) -> None:
    funds, spent, period_spent = 7 * 10**17, 123_456_789, 45_678
    async with fresh_utility(
        services, audience="https://metrics.example", sponsor_funds_wei=funds
    ) as (_issuer, tenant_id):
        async with services.db.session() as session:
            slug = (await session.get(Tenant, tenant_id)).slug
            await session.execute(
                update(Sponsor)
                .where(Sponsor.tenant_id == tenant_id)
                .values(spent_wei=spent, period_spent_wei=period_spent)
            )
        samples = await scrape(client)
        async with services.db.session() as session:
            # The period ended a moment ago: nothing is spent in the new one until a
            # reservation rolls the row over.
            await session.execute(
                update(Sponsor)
                .where(Sponsor.tenant_id == tenant_id)
                .values(period_started_at=utc_now() - timedelta(days=400))
            )
            sponsor = (
                await session.execute(select(Sponsor).where(Sponsor.tenant_id == tenant_id))
            ).scalar_one()
        ended = await scrape(client)
    assert value(samples, "ovpp_sponsor_funds_wei", utility=slug) == funds
    assert value(samples, "ovpp_sponsor_spent_wei", utility=slug) == spent
    # Prometheus values are float64: exact to about 16 significant digits, enough to alert on.
    assert value(samples, "ovpp_sponsor_remaining_wei", utility=slug) == float(funds - spent)
    assert value(samples, "ovpp_sponsor_period_spent_wei", utility=slug) == period_spent
    assert value(samples, "ovpp_sponsor_period_cap_wei", utility=slug) == sponsor.period_cap_wei
    assert value(samples, "ovpp_sponsor_active", utility=slug) == 1
    assert sponsor.period_spent_wei == period_spent  # the row is unchanged …
    assert value(ended, "ovpp_sponsor_period_spent_wei", utility=slug) == 0  # … the period not
    assert value(ended, "ovpp_sponsor_spent_wei", utility=slug) == spent


async def test_a_chain_that_cannot_be_read_leaves_its_metrics_out_not_the_scrape(
    client, services: Services
) -> None:
    reachable = services.chain.rpc
    services.chain.rpc = JsonRpc(f"http://127.0.0.1:{free_port()}", timeout_seconds=2)
    try:
        samples = await scrape(client)
    finally:
        await services.chain.rpc.close()
        services.chain.rpc = reachable
    assert value(samples, "ovpp_scrape_source_up", source="chain") == 0
    assert value(samples, "ovpp_scrape_source_up", source="database") == 1
    assert not [name for name, _ in samples if name.startswith("ovpp_relayer_key_balance")]
    assert value(samples, "ovpp_relay_transactions_waiting", status="QUEUED") is not None


async def test_the_process_counts_its_requests_and_graphql_operations(
    client, test_issuer: TestIssuer, deployer: Deployer, contracts: AddressBook
) -> None:
    customer = await new_customer(client, test_issuer, deployer, contracts)
    viewer = {"operation_type": "query", "field": "viewer", "outcome": "ok"}
    broken = {"operation_type": "unknown", "field": "unknown", "outcome": "error"}
    posted = {"route": "/graphql", "method": "POST", "status": "200"}
    before = await scrape(client)

    mine = "query Mine { me: viewer { wallet { address } } }"
    body = await gql(client, mine, token=customer.token)
    assert body["data"]["me"]["wallet"]["address"] == customer.address
    response = await client.post("/graphql", json={"query": "{ viewer {"})
    assert response.json()["errors"]
    after = await scrape(client)

    def grew(name: str, labels: dict[str, str]) -> float:
        return (value(after, name, **labels) or 0) - (value(before, name, **labels) or 0)

    # Labelled by the root field, not by the alias or the client's operation name.
    assert grew("ovpp_graphql_operations_total", viewer) == 1
    assert grew("ovpp_graphql_operations_total", broken) == 1
    assert grew("ovpp_http_requests_total", posted) >= 1
    assert grew("ovpp_http_request_duration_seconds_count", {"route": "/graphql"}) == 2
    assert value(after, "ovpp_http_requests_total", route="/metrics", method="GET", status="200")


async def test_no_client_can_grow_the_label_sets(
    client, test_issuer: TestIssuer, deployer: Deployer, contracts: AddressBook
) -> None:
    """Fields, fragments, methods and paths a client makes up all land on a few fixed labels;
    a valid query through a fragment is labelled with the schema field it reaches."""
    customer = await new_customer(client, test_issuer, deployer, contracts)
    through_fragment = "query { ...Mine } fragment Mine on Query { viewer { wallet { address } } }"
    body = await gql(client, through_fragment, token=customer.token)
    assert body["data"]["viewer"]["wallet"]["address"] == customer.address
    before = await scrape(client)
    for n in range(5):
        await client.post("/graphql", json={"query": f"{{ madeUp{n} }}"})
        await client.post(
            "/graphql",
            json={"query": f"query {{ ...F{n} }} fragment F{n} on Query {{ __typename }}"},
        )
        await client.request(f"VERB{n}", "/graphql")
        await client.get(f"/made/up/{n}")
    after = await scrape(client)

    def label_sets(samples: Samples, name: str) -> set[tuple[tuple[str, str], ...]]:
        return {labels for sample, labels in samples if sample == name}

    grown = label_sets(after, "ovpp_graphql_operations_total") - label_sets(
        before, "ovpp_graphql_operations_total"
    )
    assert {dict(labels)["field"] for labels in grown} <= {"unknown", "__typename"}
    methods = {dict(labels)["method"] for labels in label_sets(after, "ovpp_http_requests_total")}
    routes = {dict(labels)["route"] for labels in label_sets(after, "ovpp_http_requests_total")}
    assert not any(method.startswith("VERB") for method in methods) and "other" in methods
    assert routes <= {
        "/graphql",
        "/webhooks/stripe",
        "/healthz",
        "/readyz",
        "/metrics",
        "/app",
        "other",
    }
    assert value(
        before,
        "ovpp_graphql_operations_total",
        operation_type="query",
        field="viewer",
        outcome="ok",
    )


async def served(settings: Settings, **headers: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="https://wallet.example") as http:
        return await http.get("/metrics", headers=headers)


def production(**values: Any) -> Settings:
    return Settings(
        _env_file=None,
        environment="production",
        tenants=[
            {
                "slug": "bay-power",
                "name": "Bay Power",
                "issuer": "https://login.baypower.example",
                "audience": "https://wallet.baypower.example",
            }
        ],
        **values,
    )


@pytest.mark.usefixtures("no_outside_settings")
async def test_outside_development_only_the_metrics_token_opens_it() -> None:
    assert (await served(production())).status_code == 404
    token = "scraper-" + uuid.uuid4().hex
    settings = production(metrics_token=token)
    refused = await served(settings)
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
    assert (await served(settings, authorization="Bearer wrong")).status_code == 401
    assert (await served(settings, authorization=token)).status_code == 401
    assert (await served(settings, authorization="Bearer")).status_code == 401
    allowed = await served(settings, authorization=f"Bearer {token}")
    assert allowed.status_code == 200
    assert "ovpp_http_requests_total" in allowed.text


@pytest.mark.usefixtures("no_outside_settings")
@pytest.mark.parametrize("token", ["", "   ", "short-token"])
def test_an_empty_or_short_metrics_token_is_refused_at_start(token: str) -> None:
    """An unset variable in a deployment template arrives as "": it must not open /metrics to
    `Authorization: Bearer `."""
    with pytest.raises(ValidationError, match="metrics_token"):
        production(metrics_token=token)
