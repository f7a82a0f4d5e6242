"""``ovpp-wallet webhooks add | list | remove``, as an operator runs them."""

from __future__ import annotations

import asyncio

from click.testing import CliRunner, Result

from api.container import Services
from cli.main import main as ovpp_wallet
from core.settings import Settings
from identity.models import Tenant
from tests.support.utilities import fresh_utility


async def _run(settings: Settings, *arguments: str) -> Result:
    env = {
        "OVPP_ENVIRONMENT": "development",
        "OVPP_DATABASE_URL": settings.resolved_database_url,
        "OVPP_KEK": settings.kek.get_secret_value() if settings.kek else "",
        "OVPP_DATA_DIR": str(settings.data_dir),
    }
    return await asyncio.to_thread(CliRunner().invoke, ovpp_wallet, list(arguments), env=env)


async def test_an_operator_adds_lists_and_removes_an_endpoint(
    services: Services, settings: Settings
) -> None:
    async with fresh_utility(services, audience="https://hooks-cli.test") as (_issuer, tenant_id):
        async with services.db.session() as session:
            tenant = await session.get(Tenant, tenant_id)
        assert tenant is not None
        added = await _run(
            settings,
            "webhooks",
            "add",
            "--utility",
            tenant.slug,
            "--url",
            "http://127.0.0.1:9/hooks",
            "--event",
            "transaction.final",
            "--event",
            "enrollment.changed",
        )
        assert added.exit_code == 0, added.output
        lines = dict(line.split(None, 1) for line in added.output.splitlines()[:3])
        assert lines["secret"].startswith("whsec_")
        assert lines["events"] == "enrollment.changed, transaction.final"
        endpoint_id = lines["endpoint"].split()[0]

        listed = await _run(settings, "webhooks", "list", "--utility", tenant.slug)
        assert listed.exit_code == 0, listed.output
        assert endpoint_id in listed.output and "pending 0, delivered 0, failed 0" in listed.output
        assert lines["secret"] not in listed.output

        removed = await _run(settings, "webhooks", "remove", "--utility", tenant.slug, endpoint_id)
        assert removed.exit_code == 0, removed.output
        listed = await _run(settings, "webhooks", "list", "--utility", tenant.slug)
        assert listed.output.strip() == "no endpoints"

        unknown = await _run(settings, "webhooks", "list", "--utility", "no-such-utility")
        assert unknown.exit_code != 0 and "no utility with slug" in unknown.output
