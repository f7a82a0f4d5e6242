"""The program server's settings (the OpenADR 2.0b VTN, ``programs/vtn``): a part of the one
settings object (``core.settings.Settings`` inherits them), kept here so each file fits in a
head. Read from the environment with the prefix ``OVPP_`` like every other setting."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings

OPENADR_PATH_PREFIX = "/OpenADR2/Simple/2.0b"
"""Where OpenADR 2.0b simple-HTTP services live under the server's origin."""


class ProgramServerSettings(BaseSettings):
    program_server_in_serve: bool | None = Field(
        None,
        description="Run the program server (the OpenADR 2.0b VTN of the utilities' programs, "
        "`docs/program-server.md`) inside `serve` (else run `ovpp-wallet program-server`). "
        "Unset: on in development, off in production.",
    )
    program_server_host: str = Field(
        "127.0.0.1",
        description="Address the program server binds to. Without TLS (development only) it "
        "must be a loopback address.",
    )
    program_server_port: int = Field(8081, description="Port of the program server.")
    program_server_url: str | None = Field(
        None,
        description="The program server's URL as devices reach it, ending in "
        f"`{OPENADR_PATH_PREFIX}`: the `OPENADR_2_0B` control endpoint `make run` registers for "
        "the demo utility. Unset: `http://127.0.0.1:<port>/OpenADR2/Simple/2.0b` in development "
        "(`https://` when TLS is configured).",
    )
    program_server_vtn_id: str = Field(
        "OVPP-VTN",
        description="The program server's vtnID in every OpenADR message (an all-lowercase id "
        "makes OpenLEADR VENs flag their replies).",
    )
    program_server_poll_seconds: float = Field(
        10.0,
        ge=1,
        description="Poll interval the program server asks its VENs for (oadrPoll): how soon "
        "an event or a cancellation reaches a device.",
    )
    program_server_report_seconds: float = Field(
        60.0,
        ge=1,
        description="Sampling interval the program server asks VENs' telemetry for (bounded by "
        "what each VEN offers); each sample is reported as it is taken.",
    )
    program_server_tls_cert_file: Path | None = Field(
        None,
        description="PEM certificate of the program server (HTTPS, and the signature on its "
        "messages). Required outside development, with the key and the client CA.",
    )
    program_server_tls_key_file: Path | None = Field(
        None, description="PEM private key of `OVPP_PROGRAM_SERVER_TLS_CERT_FILE`."
    )
    program_server_client_ca_file: Path | None = Field(
        None,
        description="PEM file of the CAs that issue device (VEN) certificates: with TLS every "
        "VEN must present a client certificate chaining to one of them (mutual TLS), and its "
        "fingerprint is pinned at its first registration.",
    )
    program_server_online_reports: int = Field(
        3,
        ge=1,
        description="A device counts as online in `programCapacity` while its newest telemetry "
        "sample is at most this many report intervals (`OVPP_PROGRAM_SERVER_REPORT_SECONDS`) "
        "old.",
    )
    device_readings_retention_days: int = Field(
        90,
        ge=1,
        description="How long the program server keeps device telemetry (`device_readings`): "
        "older samples are deleted by its housekeeping, once an hour.",
    )

    @property
    def program_server_tls(self) -> bool:
        """All three TLS files given: HTTPS with client certificates (OpenLEADR serves plain
        HTTP unless it has all three)."""
        return bool(
            self.program_server_tls_cert_file
            and self.program_server_tls_key_file
            and self.program_server_client_ca_file
        )

    @property
    def resolved_program_server_in_serve(self) -> bool:
        if self.program_server_in_serve is not None:
            return self.program_server_in_serve
        return getattr(self, "environment", None) == "development"

    @property
    def resolved_program_server_url(self) -> str | None:
        if self.program_server_url:
            return self.program_server_url.rstrip("/")
        if getattr(self, "environment", None) != "development":
            return None
        scheme = "https" if self.program_server_tls else "http"
        return f"{scheme}://127.0.0.1:{self.program_server_port}{OPENADR_PATH_PREFIX}"

    def program_server_problems(self) -> list[str]:
        """Why the program server may not start with these settings: outside development it
        needs TLS with client certificates; without TLS it binds only to loopback."""
        problems = []
        given = [
            self.program_server_tls_cert_file,
            self.program_server_tls_key_file,
            self.program_server_client_ca_file,
        ]
        if any(given) and not all(given):
            problems.append(
                "OVPP_PROGRAM_SERVER_TLS_CERT_FILE, OVPP_PROGRAM_SERVER_TLS_KEY_FILE and "
                "OVPP_PROGRAM_SERVER_CLIENT_CA_FILE go together (OpenLEADR would silently serve "
                "plain HTTP with only some of them)"
            )
        elif not self.program_server_tls:
            if getattr(self, "environment", None) != "development":
                problems.append(
                    "the program server needs TLS with client certificates outside development "
                    "(OVPP_PROGRAM_SERVER_TLS_CERT_FILE, _TLS_KEY_FILE, _CLIENT_CA_FILE)"
                )
            elif not _is_loopback(self.program_server_host):
                problems.append(
                    "without TLS the program server binds only to a loopback address "
                    "(OVPP_PROGRAM_SERVER_HOST)"
                )
        return problems


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
