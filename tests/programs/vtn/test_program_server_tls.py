"""The program server outside plain HTTP: mutual TLS with certificates the test makes. A VEN
with a device certificate registers from its enrollment's connection parameters and its
certificate's fingerprint is pinned; the same venName with another certificate, or with none,
is refused; its event answer and readings arrive; once unenrolled it can no longer register."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from sqlmodel import select

from api.container import Services
from chain.profiles import deployer_key
from core.settings import Settings
from devsupport.demo import demo_utility
from programs.operator import onboard_utility
from programs.vtn.models import Ven
from tests.support.graphql import gql
from tests.support.issuer import TestIssuer
from tests.support.program_server import (
    EVENTS,
    Pki,
    active_openadr_enrollment,
    both_measurements,
    demo_admin,
    event_starting_soon,
    eventually,
    program_server,
    response_of,
    running_ven,
    unenroll,
    ven_of,
)


@contextlib.asynccontextmanager
async def demo_endpoint(services: Services, tenant, settings: Settings) -> AsyncIterator[None]:
    """The demo utility's OPENADR_2_0B endpoint is ``settings``' program server URL for a while
    (routing puts it in the connection parameters of the enrollments made meanwhile)."""
    operator = deployer_key(services.settings, services.chain.profile)
    await onboard_utility(
        services, tenant=tenant, spec=demo_utility(settings), operator_key=operator
    )
    try:
        yield
    finally:
        await onboard_utility(
            services, tenant=tenant, spec=demo_utility(services.settings), operator_key=operator
        )


async def test_over_mutual_tls_the_first_certificate_is_the_vens_credential(
    client,
    relayer,
    registry_demo,
    services: Services,
    settings: Settings,
    demo_issuer: TestIssuer,
    deployer,
    contracts,
    tmp_path: Path,
) -> None:
    pki = Pki.create(tmp_path)
    tls = settings.model_copy(
        update={
            "program_server_tls_cert_file": pki.server_cert,
            "program_server_tls_key_file": pki.server_key,
            "program_server_client_ca_file": pki.device_ca,
        }
    )
    async with demo_endpoint(services, registry_demo, tls):
        customer, program, active = await active_openadr_enrollment(
            client, demo_issuer, deployer, contracts, services
        )
    parameters = active["connectionParameters"]
    assert parameters["vtnUrl"].startswith("https://127.0.0.1:")
    device = pki.device("device-1")
    async with program_server(services.db, tls):
        without_certificate = ven_of(parameters)
        async with running_ven(without_certificate):
            assert not without_certificate.registered  # no handshake without a client cert

        ven = ven_of(parameters, credentials=device)
        async with running_ven(ven):
            assert ven.registered
            async with services.db.session() as session:
                row = (
                    await session.execute(select(Ven).where(Ven.ven_name == parameters["venName"]))
                ).scalar_one()
            assert row.cert_fingerprint == device.fingerprint

            impostor = ven_of(parameters, credentials=pki.device("device-2"))
            async with running_ven(impostor):
                assert not impostor.registered  # the pinned certificate is required

            admin = demo_admin(demo_issuer)
            created = await event_starting_soon(client, admin, program, key="tls-event")

            async def answered() -> bool:
                body = await gql(client, EVENTS, {"program": program}, token=admin)
                event = next(
                    e for e in body["data"]["utilityAdmin"]["events"] if e["id"] == created["id"]
                )
                return response_of(event, parameters["venName"])["response"] == "OPT_IN"

            await eventually(answered, timeout=settings.program_server_poll_seconds + 3)
            await eventually(lambda: both_measurements(services, active["id"]), timeout=15)

        await unenroll(client, customer.token, active["id"])
        again = ven_of(parameters, credentials=device)
        async with running_ven(again):
            assert not again.registered
