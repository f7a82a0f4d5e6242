"""The product as separate processes, configured by environment as an operator would run it:
``ovpp-wallet relayer`` and ``ovpp-wallet serve`` (API only)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench.harness import free_port, say
from core.settings import Settings


def _environment(settings: Settings) -> dict[str, str]:
    """The product configured by environment, as an operator would run it."""
    assert settings.kek is not None
    return {
        **{key: value for key, value in os.environ.items() if not key.startswith("OVPP_")},
        "OVPP_ENVIRONMENT": "production",
        "OVPP_DATA_DIR": str(settings.data_dir),
        "OVPP_DATABASE_URL": settings.resolved_database_url,
        "OVPP_RPC_URL": settings.resolved_rpc_url,
        "OVPP_ADDRESS_BOOK": str(settings.address_book),
        "OVPP_KEK": settings.kek.get_secret_value(),
        "OVPP_METRICS_TOKEN": "bench-metrics-scraper-token",  # production serve requires one
        "OVPP_RELAYER_KEYS": str(settings.relayer_keys),
        "OVPP_TENANTS": json.dumps([tenant.model_dump() for tenant in settings.tenants]),
        "OVPP_LOG_LEVEL": "WARNING",
        "OVPP_DATABASE_POOL_SIZE": str(settings.database_pool_size),
        "OVPP_RELAYER_ROUND_PAUSE_SECONDS": str(settings.relayer_round_pause_seconds),
        **_stripe_environment(settings),
    }


def _stripe_environment(settings: Settings) -> dict[str, str]:
    if settings.stripe_api_key is None or settings.stripe_webhook_secret is None:
        return {}
    return {
        "OVPP_STRIPE_API_KEY": settings.stripe_api_key.get_secret_value(),
        "OVPP_STRIPE_WEBHOOK_SECRET": settings.stripe_webhook_secret.get_secret_value(),
        "OVPP_STRIPE_API_BASE": settings.resolved_stripe_api_base,
    }


def start_relayer_process(settings: Settings, workdir: Path) -> subprocess.Popen[bytes]:
    """``ovpp-wallet relayer`` configured by environment, as an operator would run it."""
    log_path = workdir / "relayer.log"
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "ovpp-wallet"), "relayer"],
        env=_environment(settings),
        cwd=workdir,
        stdout=open(log_path, "wb"),  # the child process owns it
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while b"relayer worker running" not in log_path.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the relayer process did not start:\n{log_path.read_text()}")
        time.sleep(0.1)
    say(f"relayer process {process.pid} running")
    return process


def start_api_processes(
    settings: Settings,
    workdir: Path,
    count: int,
    *,
    path: str = "/graphql",
    profile_to: Path | None = None,
) -> list[tuple[subprocess.Popen[bytes], str]]:
    """``count`` × ``ovpp-wallet serve`` (production mode, no relayer or onramp processor
    inside), each on its own port, as behind a load balancer; returns them with their URLs of
    ``path`` once they answer. With ``profile_to``, the first one runs under cProfile
    (``bench.profiled_serve``: SIGUSR1 starts it, SIGUSR2 writes the profile there)."""
    started = []
    for index in range(count):
        port = free_port()
        log_path = workdir / f"api-{index}.log"
        environment = {
            **_environment(settings),
            "OVPP_PORT": str(port),
            "OVPP_RELAYER_IN_SERVE": "false",
            "OVPP_ONRAMP_PROCESSOR_IN_SERVE": "false",
        }
        command = [str(Path(sys.executable).parent / "ovpp-wallet"), "serve"]
        if profile_to is not None and index == 0:
            command = [sys.executable, "-m", "bench.profiled_serve", str(profile_to)]
        process = subprocess.Popen(
            command,
            env=environment,
            cwd=workdir,
            stdout=open(log_path, "wb"),  # the child process owns it
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append((process, f"http://127.0.0.1:{port}", log_path))
    deadline = time.monotonic() + 90
    for process, url, log_path in started:
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"an API process did not start:\n{log_path.read_text()}")
            time.sleep(0.2)
        say(f"API process {process.pid} answering at {url}")
    return [(process, url + path) for process, url, _log in started]


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
