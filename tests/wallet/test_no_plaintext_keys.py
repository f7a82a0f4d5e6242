"""No custodial private key, and not the KEK, is anywhere in the database, in any encoding.

The whole database is dumped the ways an attacker with a backup would read it: SQLite's raw
files (with the WAL, where fresh writes live) and its SQL dump; PostgreSQL's tables through
``COPY … TO STDOUT`` in text and binary form, and ``pg_dump`` when it is installed. The search
is proven first: a planted fake key, stored in plaintext in a wallet row, must be found in
every one of those dumps, and the search must spot each encoding in a synthetic dump.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy import delete
from sqlalchemy import select as sa_select
from sqlalchemy.engine import make_url
from sqlmodel import select

from api.container import Services
from identity.models import Customer, Tenant
from migrations.tables import metadata
from tests.support.issuer import TestIssuer
from tests.support.wallets import create_wallets
from wallet.keys import SealedKey, unlocked_account
from wallet.models import Wallet

SEALED_KEY_COLUMNS = {"address", "encrypted_private_key", "wrapped_data_key", "kek_id"}


def encodings_of(secret: bytes) -> dict[str, bytes]:
    """The ways a 32-byte secret could be written out. Hex is matched case-insensitively."""
    hex_digits = secret.hex().encode()
    standard = base64.b64encode(secret)
    urlsafe = base64.urlsafe_b64encode(secret)
    return {
        "raw bytes": secret,
        "hex": hex_digits,
        "0x-hex": b"0x" + hex_digits,
        "base64": standard,
        "base64 without padding": standard.rstrip(b"="),
        "urlsafe base64": urlsafe,
        "urlsafe base64 without padding": urlsafe.rstrip(b"="),
    }


def encodings_found(dump: bytes, secret: bytes) -> list[str]:
    """Which encodings of ``secret`` occur in ``dump``."""
    lowered = dump.lower()
    found = []
    for name, needle in encodings_of(secret).items():
        haystack = lowered if "hex" in name else dump
        if needle in haystack:
            found.append(name)
    return found


@dataclass(frozen=True)
class Dump:
    """One way of reading the whole database, and what it produced."""

    method: str
    content: bytes


# Run in a child process: opening and closing the database's files in this process would drop
# every POSIX lock this process holds on them (close() releases a process's fcntl locks), among
# them SQLite's locks on the -shm file; another process opening the database afterwards (a
# `serve` or CLI subprocess of a later test) would then take itself for the only user, rebuild
# the WAL index, and the two processes would stop seeing each other's writes.
_SQLITE_DUMP_SCRIPT = """
import base64, json, sqlite3, sys
from pathlib import Path
path = Path(sys.argv[1])
# Read the files before opening a connection, which could checkpoint the WAL.
raw = b"".join(
    file.read_bytes()
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"))
    if file.exists()
)
connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
try:
    dump = "\\n".join(connection.iterdump()).encode()
finally:
    connection.close()
print(json.dumps({"raw": base64.b64encode(raw).decode(), "sql": base64.b64encode(dump).decode()}))
"""


def _dump_sqlite(database_url: str) -> list[Dump]:
    path = Path(make_url(database_url).database or "")
    assert path.is_file(), path
    child = subprocess.run(
        [sys.executable, "-c", _SQLITE_DUMP_SCRIPT, str(path)],
        capture_output=True,
        check=True,
        timeout=60,
    )
    dumped = json.loads(child.stdout)
    return [
        Dump("sqlite raw files (db, -wal, -shm)", base64.b64decode(dumped["raw"])),
        Dump("sqlite iterdump", base64.b64decode(dumped["sql"])),
    ]


async def _dump_postgresql(database_url: str) -> list[Dump]:
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        tables = await connection.fetch(
            "SELECT schemaname, tablename FROM pg_catalog.pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') "
            "ORDER BY schemaname, tablename"
        )
        assert any(table["tablename"] == "wallets" for table in tables), tables
        dumps = []
        for copy_format in ("text", "binary"):
            chunks: list[bytes] = []

            async def collect(chunk: bytes, chunks: list[bytes] = chunks) -> None:
                chunks.append(bytes(chunk))

            for table in tables:
                await connection.copy_from_table(
                    table["tablename"],
                    schema_name=table["schemaname"],
                    output=collect,
                    format=copy_format,
                )
            dumps.append(Dump(f"postgresql COPY ({copy_format})", b"".join(chunks)))
    finally:
        await connection.close()

    pg_dump = shutil.which("pg_dump")
    if pg_dump is not None:
        process = await asyncio.create_subprocess_exec(
            pg_dump,
            "--no-owner",
            f"--dbname={dsn}",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await process.communicate()
        # An older client refuses a newer server; COPY above has already read everything.
        if b"server version mismatch" not in stderr:
            assert process.returncode == 0, stderr.decode(errors="replace")
            dumps.append(Dump("pg_dump (plain)", stdout))
    return dumps


async def _dump_database(database_url: str) -> list[Dump]:
    if database_url.startswith("sqlite"):
        return await asyncio.to_thread(_dump_sqlite, database_url)
    return await _dump_postgresql(database_url)


async def _every_private_key(services: Services) -> dict[tuple[str, str], bytes]:
    """The plaintext of every sealed key in the database, keyed by (table, address): wallets,
    and any other table that stores keys the same way (relayer keys, …)."""
    sealed_key_tables = [
        table for table in metadata.sorted_tables if SEALED_KEY_COLUMNS <= set(table.columns.keys())
    ]
    assert "wallets" in {table.name for table in sealed_key_tables}
    private_keys = {}
    async with services.db.session() as session:
        for table in sealed_key_tables:
            columns = [table.columns[name] for name in SEALED_KEY_COLUMNS]
            for row in (await session.execute(sa_select(*columns))).mappings():
                sealed = SealedKey(**{name: row[name] for name in SEALED_KEY_COLUMNS})
                with unlocked_account(sealed, keyring=services.keyring) as account:
                    private_keys[(table.name, sealed.address)] = bytes(account.key)
    return private_keys


async def _plant_plaintext_wallet(services: Services, *, fake_private_key: bytes) -> str:
    """A wallet row holding a (fake) private key in plaintext: the bug this file must catch."""
    async with services.db.session() as session:
        tenant = (
            await session.execute(select(Tenant).where(Tenant.slug == "test-utility"))
        ).scalar_one()
        customer = Customer(tenant_id=tenant.id, subject=f"planted-{uuid.uuid4().hex}")
        session.add(customer)
        await session.flush()
        wallet = Wallet(
            customer_id=customer.id,
            address="0x" + os.urandom(20).hex(),
            encrypted_private_key=fake_private_key,
            wrapped_data_key=os.urandom(60),
            kek_id="test:planted-plaintext",
        )
        session.add(wallet)
        return customer.id


async def _remove_planted_wallet(services: Services, *, customer_id: str) -> None:
    async with services.db.session() as session:
        await session.execute(delete(Wallet).where(Wallet.customer_id == customer_id))
        await session.execute(delete(Customer).where(Customer.id == customer_id))


def test_the_search_spots_every_encoding_of_a_secret() -> None:
    secret = bytes(range(200, 232))
    other = bytes(range(32))
    for name, needle in encodings_of(secret).items():
        written = needle.upper() if "hex" in name else needle
        dump = b"INSERT INTO t VALUES ('" + written + b"');\x00\xff"
        assert name in encodings_found(dump, secret), (name, dump)
        assert encodings_found(dump, other) == []
    assert encodings_found(b"nothing secret here", secret) == []


async def test_no_private_key_or_kek_is_stored_in_plaintext(
    client: httpx.AsyncClient,
    services: Services,
    test_issuer: TestIssuer,
    database_url: str,
    kek: str,
    backend: str,
) -> None:
    created = await create_wallets(client, test_issuer, count=6, label=f"plaintext-{backend}")
    private_keys = await _every_private_key(services)
    assert set(created) <= {address for _table, address in private_keys}
    assert len(set(private_keys.values())) == len(private_keys)

    fake_private_key = os.urandom(32)
    planted_customer_id = await _plant_plaintext_wallet(services, fake_private_key=fake_private_key)
    try:
        dumps = await _dump_database(database_url)
    finally:
        await _remove_planted_wallet(services, customer_id=planted_customer_id)

    assert len(dumps) >= 2, [dump.method for dump in dumps]
    for dump in dumps:
        assert encodings_found(dump.content, fake_private_key), (
            f"{dump.method} does not show a key stored in plaintext: the dump misses wallets"
        )

    secrets = {
        f"private key of {address} ({table})": key for (table, address), key in private_keys.items()
    }
    secrets["the session KEK"] = base64.b64decode(kek)
    leaks = [
        f"{name} as {', '.join(found)} in {dump.method}"
        for dump in dumps
        for name, secret in secrets.items()
        if (found := encodings_found(dump.content, secret))
    ]
    assert leaks == []
