# ruff: noqa: S608 (the SQL is built from this test's own constants)
"""Migration 0015 marks the system wallets that exist already as SYSTEM (a utility's wallet,
onboarded or not, and the onramp treasury), leaves people CUSTOMER, and trusts every existing
tenant until the next start says otherwise. Its downgrade keeps a person and a system wallet
of the same name apart under the old (tenant, subject) uniqueness."""

from __future__ import annotations

import uuid

from core.migrate import migrate_to
from tests.support.migrations import NOW, execute

BLOB = "''"  # an empty BLOB (SQLite) or bytea (PostgreSQL): the keys are never read here


def customer(tenant: str, subject: str) -> tuple[str, str]:
    """The INSERTs of a customer and its wallet (``;``-separated), and the wallet's id."""
    customer_id, wallet_id = str(uuid.uuid4()), str(uuid.uuid4())
    address = "0x" + uuid.uuid4().hex + uuid.uuid4().hex[:8]
    return (
        f"INSERT INTO customers (id, tenant_id, subject, created_at) "
        f"VALUES ('{customer_id}', '{tenant}', '{subject}', '{NOW}');"
        f"INSERT INTO wallets (id, customer_id, address, encrypted_private_key, "
        f"wrapped_data_key, kek_id, created_at, next_forwarder_nonce) VALUES ('{wallet_id}', "
        f"'{customer_id}', '{address}', {BLOB}, {BLOB}, 'local:test', '{NOW}', 0)"
    ), wallet_id


def tenant(slug: str, issuer: str) -> str:
    return (
        f"INSERT INTO tenants (id, slug, name, issuer, audience, created_at) "
        f"VALUES ('{slug}', '{slug}', '{slug}', '{issuer}', 'aud', '{NOW}')"
    )


async def test_existing_system_wallets_become_system_and_tenants_stay_trusted(
    empty_database: str,
) -> None:
    url = empty_database
    await migrate_to(url, "0014")
    onboarded, onboarded_wallet = customer("acme", "utility-account:acme")
    statements = [
        tenant("acme", "https://login.acme.example"),
        tenant("bay", "https://login.bay.example"),
        tenant("ovpp-platform", "urn:ovpp:platform"),
        *onboarded.split(";"),
        *customer("bay", "utility-account:bay")[0].split(";"),  # wallet made, never onboarded
        *customer("ovpp-platform", "onramp-treasury")[0].split(";"),
        *customer("acme", "alice")[0].split(";"),
        *customer("acme", "utility-account:bay")[0].split(";"),  # bay's name, at acme: a person
        "INSERT INTO utility_accounts (id, tenant_id, utility_id, wallet_id, country, region, "
        f"postal_codes, created_at) VALUES ('u1', 'acme', '0x01', '{onboarded_wallet}', 'US', "
        f"'US-CA', '[]', '{NOW}')",
    ]
    await execute(url, *statements)

    await migrate_to(url, "0015")

    kinds = await execute(url, "SELECT tenant_id, subject, kind FROM customers")
    assert sorted(kinds) == [
        ("acme", "alice", "CUSTOMER"),
        ("acme", "utility-account:acme", "SYSTEM"),
        ("acme", "utility-account:bay", "CUSTOMER"),
        ("bay", "utility-account:bay", "SYSTEM"),
        ("ovpp-platform", "onramp-treasury", "SYSTEM"),
    ]
    tenants = await execute(url, "SELECT slug, enabled, admin_client_ids FROM tenants")
    assert sorted((slug, bool(enabled)) for slug, enabled, _ in tenants) == [
        ("acme", True),
        ("bay", True),
        ("ovpp-platform", True),
    ]

    # after 0015 a person may share a system wallet's name; going back renames the person
    await execute(url, *customer("acme", "utility-account:acme")[0].split(";"))
    await migrate_to(url, "0014", down=True)
    subjects = await execute(url, "SELECT subject FROM customers WHERE tenant_id = 'acme'")
    names = sorted(subject for (subject,) in subjects)
    assert names[:2] == ["alice", "utility-account:acme"]  # the system wallet keeps its name
    assert names[2].startswith("utility-account:acme#customer:")
    assert names[3] == "utility-account:bay"
