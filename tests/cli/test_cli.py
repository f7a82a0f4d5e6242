"""`ovpp-wallet`, run as the installed console script: every command is there, the
configuration table is complete, `migrate` and `deploy` leave what they promise, and a
misconfiguration ends with a message rather than a traceback."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from web3 import Web3

from chain.address_book import AddressBook
from chain.artifacts import artifact
from cli.show import settings_fields
from core.settings import Settings
from devsupport.anvil import LocalChain
from tests.support.ports import free_port

CLI = Path(sys.executable).with_name("ovpp-wallet")


def _run(*arguments: str, cwd: Path, **settings: str | Path) -> subprocess.CompletedProcess[str]:
    """``ovpp-wallet <arguments>`` with only the given OVPP_* settings (none inherited), from a
    directory outside the repository so a developer's .env cannot leak in."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("OVPP_")}
    env.update({f"OVPP_{name.upper()}": str(value) for name, value in settings.items()})
    return subprocess.run(
        [str(CLI), *arguments],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_config_shows_every_setting_but_no_secret(tmp_path: Path) -> None:
    result = _run(
        "config",
        cwd=tmp_path,
        environment="production",
        database_url="postgresql+asyncpg://wallet:db-password-1@db.internal:5432/wallet",
        chain="custom",
        chain_id="153153",
        rpc_url="https://rpc.provider.example/v3/rpc-api-key-2?token=rpc-token-3",
        stripe_api_key="sk_live_stripe-secret-4",
        kek="a2VrLXNlY3JldC01LWtlay1zZWNyZXQtNS1rZWstc2U=",
    )

    assert result.returncode == 0, result.stderr
    assert "OVPP_DATABASE_URL=postgresql+asyncpg://***@db.internal:5432/wallet" in result.stdout
    assert "OVPP_RPC_URL=https://rpc.provider.example/…" in result.stdout
    for secret in ("db-password-1", "rpc-api-key-2", "rpc-token-3", "stripe-secret-4", "a2Vr"):
        assert secret not in result.stdout + result.stderr
    assert all(f"OVPP_{name.upper()}=" in result.stdout for name in Settings.model_fields)


def test_help_lists_every_command(tmp_path: Path) -> None:
    result = _run("--help", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    commands_section = result.stdout.split("Commands:", 1)[1]
    listed = {line.split()[0] for line in commands_section.splitlines() if line.strip()}
    assert {
        "serve",
        "migrate",
        "deploy",
        "dev-token",
        "keys",
        "config",
        "schema",
        "balances",
        "relayer",
        "relayer-authorize",
    } <= listed


def test_config_markdown_has_one_row_per_setting(tmp_path: Path) -> None:
    result = _run("config", "--markdown", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| `OVPP_")]
    variables = [row.split("`")[1] for row in rows]
    assert variables == [f"OVPP_{name.upper()}" for name in settings_fields()]
    assert sorted(settings_fields()) == sorted(Settings.model_fields)
    assert all(row.count("|") == 4 for row in rows), "a description must not break the table"


def test_migrate_creates_the_tables_and_is_idempotent(tmp_path: Path) -> None:
    database_file = tmp_path / "fresh.db"
    database_url = f"sqlite+aiosqlite:///{database_file}"
    where = {"database_url": database_url, "data_dir": tmp_path}

    first = _run("migrate", cwd=tmp_path, environment="development", **where)
    assert first.returncode == 0, first.stderr
    schema_after_first = _sqlite_schema(database_file)
    second = _run("migrate", cwd=tmp_path, environment="development", **where)
    assert second.returncode == 0, second.stderr

    tables, versions = schema_after_first
    assert {"tenants", "customers", "wallets", "alembic_version"} <= tables
    assert len(versions) == 1
    assert _sqlite_schema(database_file) == schema_after_first


def test_deploy_writes_the_address_book_of_live_contracts(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with LocalChain(port=free_port(), log_file=tmp_path / "anvil.log") as chain:
        result = _run(
            "deploy",
            cwd=tmp_path,
            environment="development",
            rpc_url=chain.rpc_url,
            data_dir=data_dir,
        )
        assert result.returncode == 0, result.stderr

        book_path = data_dir / "addresses-31337.json"
        assert f"address book written to {book_path}" in result.stdout
        book = AddressBook.load(book_path)
        assert book is not None
        assert book.chain_id == 31337
        web3 = Web3(Web3.HTTPProvider(chain.rpc_url))
        for address in (book.forwarder, book.ovpp_token, book.stablecoin):
            assert len(web3.eth.get_code(Web3.to_checksum_address(address))) > 0, address


def test_relayer_authorize_lets_the_forwarder_accept_the_relayer_keys(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with LocalChain(port=free_port(), log_file=tmp_path / "anvil.log") as chain:
        settings = {
            "environment": "development",
            "rpc_url": chain.rpc_url,
            "data_dir": data_dir,
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'ovpp.db'}",
            "relayer_keys": "2",
        }
        for step in ("deploy", "migrate"):
            result = _run(step, cwd=tmp_path, **settings)
            assert result.returncode == 0, result.stderr

        first = _run("relayer-authorize", cwd=tmp_path, **settings)
        assert first.returncode == 0, first.stderr
        again = _run("relayer-authorize", cwd=tmp_path, **settings)
        assert again.returncode == 0, again.stderr

        book = AddressBook.load(data_dir / "addresses-31337.json")
        assert book is not None
        web3 = Web3(Web3.HTTPProvider(chain.rpc_url))
        forwarder = web3.eth.contract(address=book.forwarder, abi=artifact("OVPPForwarder").abi)
        lines = first.stdout.splitlines()
        addresses = [line.split()[2].rstrip(":") for line in lines]
        assert len(addresses) == 2
        assert lines == [f"relayer key {a}: authorized now" for a in addresses]
        assert again.stdout.splitlines() == [
            f"relayer key {a}: already authorized" for a in addresses
        ]
        assert all(forwarder.functions.isRelayer(a).call() for a in addresses)
        assert not forwarder.functions.isRelayer(Web3.to_checksum_address("0x" + "11" * 20)).call()


@pytest.mark.parametrize("command", [("keys", "rewrap"), ("serve",)], ids=["keys-rewrap", "serve"])
def test_production_without_a_kek_fails_with_a_clear_message(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    result = _run(
        *command,
        cwd=tmp_path,
        environment="production",
        data_dir=tmp_path / "data",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'ovpp.db'}",
        # Should serve regress and get past the key check, it must not start a chain.
        start_local_chain="false",
        rpc_url=f"http://127.0.0.1:{free_port()}",
        port=free_port(),
    )

    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    assert "OVPP_KEK is required in production" in result.stderr
    assert not (tmp_path / "data" / "kek.b64").exists(), "production must never generate a key"


def _sqlite_schema(database_file: Path) -> tuple[set[str], list[str]]:
    """The table names and the Alembic revision(s) recorded in ``database_file``."""
    connection = sqlite3.connect(database_file)
    try:
        tables = {
            name
            for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        versions = [row[0] for row in connection.execute("SELECT version_num FROM alembic_version")]
    finally:
        connection.close()
    return tables, versions
