"""The program server: OpenLEADR's ``OpenADRServer`` with every piece of state in the database.

OpenLEADR keeps registrations, event queues and report subscriptions in memory; here its hooks
read and write the tables instead (``service``, ``events``, ``telemetry``), so a restart loses
nothing and the VENs carry on: registration is refused unless provisioned (OpenADR's 452),
``ven_lookup`` makes an unknown or de-provisioned ``venID`` register again, events are handed
out from ``on_poll``/``on_request_event`` and answers recorded from ``on_created_event``, and
the report handlers are replaced so samples are looked up by the stored streams. Over TLS,
OpenLEADR checks each message's client certificate against the fingerprint ``ven_lookup``
returns (pinned at the first registration). OpenLEADR's hooks are process-global: one program
server per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aiohttp import web
from openleadr import OpenADRServer, errors, objects, utils

from core.background import BackgroundLoop
from core.db import Database
from core.program_server_settings import OPENADR_PATH_PREFIX
from core.settings import Settings
from programs.vtn import events as dr_events
from programs.vtn import service, telemetry
from programs.vtn.errors import RegistrationRefused
from programs.vtn.models import DrEvent, Ven

logger = logging.getLogger(__name__)

HOUSEKEEPING_SECONDS = 3600

_LOOKED_UP: contextvars.ContextVar[dict[str, service.VenIdentity | None] | None] = (
    contextvars.ContextVar("program_server_looked_up", default=None)
)
"""The VENs looked up while handling the current HTTP request (OpenLEADR's ``ven_lookup``,
called once per message, twice over TLS), for its handler: one lookup per message."""


@web.middleware
async def _lookups_of_request(request: web.Request, handler: Any) -> web.StreamResponse:
    token = _LOOKED_UP.set({})
    try:
        return await handler(request)
    finally:
        _LOOKED_UP.reset(token)


@dataclass
class _Offered:
    """What the program server asked a VEN to report, kept with the callback OpenLEADR wants
    until the report request id it generates is known."""

    resource_id: str
    measurement: str
    unit: str | None
    scale: str | None

    def __call__(self, data: Any) -> None:  # samples come through ``_update_report``
        return None


class ProgramServer:
    def __init__(self, *, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        problems = settings.program_server_problems()
        if problems:
            from core.errors import ConfigurationError

            raise ConfigurationError("the program server needs: " + "; ".join(problems))
        tls = settings.program_server_tls
        signing = str(settings.program_server_tls_cert_file) if tls else None
        signing_key = str(settings.program_server_tls_key_file) if tls else None
        self.tls = tls
        self.vtn = OpenADRServer(
            vtn_id=settings.program_server_vtn_id,
            http_host=settings.program_server_host,
            http_port=settings.program_server_port,
            http_path_prefix=OPENADR_PATH_PREFIX,
            requested_poll_freq=timedelta(seconds=settings.program_server_poll_seconds),
            http_cert=signing,
            http_key=signing_key,
            http_ca_file=str(settings.program_server_client_ca_file) if tls else None,
            cert=signing,
            key=signing_key,
            show_fingerprint=False,
            ven_lookup=self._ven_lookup,
        )
        self.vtn.app.middlewares.append(_lookups_of_request)
        self.streams = telemetry.StreamCache()
        self.vtn.add_handler("on_create_party_registration", self._create_party_registration)
        self.vtn.add_handler("on_cancel_party_registration", self._cancel_party_registration)
        self.vtn.add_handler("on_poll", self._poll)
        self.vtn.add_handler("on_request_event", self._request_event)
        self.vtn.add_handler("on_created_event", self._created_event)
        self.vtn.add_handler("on_register_report", self._offered_report)
        reports = self.vtn.services["report_service"]
        self._openleadr_register_report = reports.handlers["oadrRegisterReport"]
        reports.handlers["oadrRegisterReport"] = self._register_report
        reports.handlers["oadrUpdateReport"] = self._update_report

    async def start(self) -> None:
        with contextlib.redirect_stdout(None):  # OpenLEADR prints a banner
            await self.vtn.run()
        logger.info(
            "program server: %s://%s:%s%s",
            "https" if self.tls else "http",
            self.settings.program_server_host,
            self.settings.program_server_port,
            OPENADR_PATH_PREFIX,
        )

    async def stop(self) -> None:
        await self.vtn.stop()

    # Registration

    async def _create_party_registration(self, payload: dict[str, Any]) -> tuple[str, str]:
        try:
            async with self.db.session() as session:
                registration = await service.register(
                    session,
                    ven_name=payload.get("ven_name") or "",
                    ven_id=payload.get("ven_id"),
                    fingerprint=payload.get("fingerprint"),
                    tls=self.tls,
                )
        except RegistrationRefused as refused:
            logger.info("program server: registration refused: %s", refused.message)
            raise errors.NotRegisteredOrAuthorizedError(refused.message) from refused
        return registration.ven_id, registration.registration_id

    async def _cancel_party_registration(self, payload: dict[str, Any]) -> tuple[str, dict]:
        async with self.db.session() as session:
            registration_id = await service.cancel_registration(session, payload["ven_id"])
        return "oadrCanceledPartyRegistration", {
            "registration_id": registration_id or payload.get("registration_id"),
            "ven_id": payload["ven_id"],
        }

    async def _ven_lookup(self, ven_id: str) -> dict[str, Any] | None:
        ven = await self._identity(ven_id)
        if ven is None:
            return None
        return {
            "ven_id": ven.ven_id,
            "ven_name": ven.ven_name,
            "fingerprint": ven.cert_fingerprint,
            "registration_id": ven.registration_id,
        }

    async def _identity(self, ven_id: str) -> service.VenIdentity | None:
        """The VEN as this request found it: read once per HTTP request (never cached across
        requests, so a de-provisioned VEN or a new pinned certificate counts at once)."""
        looked_up = _LOOKED_UP.get()
        if looked_up is not None and ven_id in looked_up:
            return looked_up[ven_id]
        async with self.db.autocommit() as connection:
            ven = await service.registered_identity(connection, ven_id)
        if looked_up is not None:
            looked_up[ven_id] = ven
        return ven

    async def _ven(self, session: Any, ven_id: str) -> Ven:
        ven = await service.registered_ven(session, ven_id)
        if ven is None:  # de-provisioned between OpenLEADR's lookup and now
            raise errors.RequestReregistration(ven_id)
        return ven

    # Events

    async def _events_for(self, ven_id: str, *, only_changed: bool) -> list[objects.Event] | None:
        async with self.db.session() as session:
            ven = await self._ven(session, ven_id)
            found = await dr_events.events_for_ven(session, ven, only_changed=only_changed)
        return [_openadr_event(event, ven_id=ven_id) for event in found] or None

    async def _poll(self, ven_id: str) -> tuple[str, dict] | None:
        found = await self._events_for(ven_id, only_changed=True)
        if not found:
            return None
        return "oadrDistributeEvent", {"events": utils.order_events(found)}

    async def _request_event(self, ven_id: str) -> list[objects.Event] | None:
        return await self._events_for(ven_id, only_changed=False)

    async def _created_event(self, ven_id: str, event_id: str, opt_type: str) -> None:
        async with self.db.session() as session:
            ven = await self._ven(session, ven_id)
            await dr_events.record_response(session, ven, event_id=event_id, opt_type=opt_type)

    # Reports

    def _offered_report(
        self,
        ven_id: str,
        resource_id: str,
        measurement: str,
        unit: str | None,
        scale: str | None,
        min_sampling_interval: timedelta,
        max_sampling_interval: timedelta,
    ) -> tuple[_Offered, timedelta] | None:
        """Ask for real power and state of charge, at the configured interval within what the
        VEN offers; nothing else."""
        wanted = telemetry.wanted_measurement(measurement)
        if wanted is None:
            return None
        interval = timedelta(seconds=self.settings.program_server_report_seconds)
        interval = max(min_sampling_interval or interval, interval)
        if max_sampling_interval and max_sampling_interval >= min_sampling_interval:
            interval = min(interval, max_sampling_interval)
        return _Offered(resource_id or "", wanted, unit, scale), interval

    async def _register_report(self, payload: dict[str, Any]) -> tuple[str, dict]:
        """OpenLEADR's own handler (which calls ``_offered_report``), then the streams it asked
        for are stored and its in-memory callbacks dropped."""
        response_type, response = await self._openleadr_register_report(payload)
        callbacks = self.vtn.services["report_service"].report_callbacks
        reading_types = {
            description["r_id"]: description.get("reading_type")
            for report in payload.get("reports") or []
            for description in report.get("report_descriptions") or []
        }
        streams = []
        for request in response.get("report_requests") or []:
            for specifier in request.report_specifier.specifier_payloads:
                offered = callbacks.pop((request.report_request_id, specifier.r_id), None)
                if isinstance(offered, _Offered):
                    streams.append(
                        telemetry.OfferedStream(
                            report_request_id=request.report_request_id,
                            r_id=specifier.r_id,
                            resource_id=offered.resource_id,
                            measurement=offered.measurement,
                            unit=offered.unit,
                            scale=offered.scale,
                            reading_type=reading_types.get(specifier.r_id),
                        )
                    )
        async with self.db.session() as session:
            ven = await self._ven(session, payload["ven_id"])
            await telemetry.register_streams(session, ven, streams)
        self.streams.forget(ven.id)
        return response_type, response

    async def _update_report(self, payload: dict[str, Any]) -> tuple[str, dict]:
        samples = [
            telemetry.Sample(
                report_request_id=report["report_request_id"],
                r_id=interval["report_payload"]["r_id"],
                timestamp=interval["dtstart"],
                value=interval["report_payload"]["value"],
            )
            for report in payload.get("reports") or []
            for interval in report.get("intervals") or []
            if interval.get("report_payload")
        ]
        ven = await self._identity(payload["ven_id"])  # the one OpenLEADR's lookup found
        if ven is None:
            raise errors.RequestReregistration(payload["ven_id"])
        async with self.db.autocommit() as connection:
            await telemetry.store_samples(connection, ven, self.streams, samples)
        return "oadrUpdatedReport", {}


def _signal(
    event: DrEvent, *, name: str, kind: str, payload: float, suffix: str
) -> objects.EventSignal:
    return objects.EventSignal(
        intervals=[
            objects.Interval(
                dtstart=event.start,
                duration=timedelta(minutes=event.duration_minutes),
                signal_payload=float(payload),
                uid=0,
            )
        ],
        signal_name=name,
        signal_type=kind,
        signal_id=f"{event.id}-{suffix}",
    )


def _openadr_event(sent: dr_events.VenEvent, *, ven_id: str) -> objects.Event:
    """The event as this VEN gets it: its signal, and a ``CHARGE_STATE`` setpoint signal, the
    state of charge (percent) its customer's limits keep during it."""
    event = sent.event
    signal_name, signal_type = dr_events.SIGNAL_TYPES[event.signal_type]
    duration = timedelta(minutes=event.duration_minutes)
    payload = event.target_kw if signal_type == "setpoint" else event.level
    active_period = objects.ActivePeriod(dtstart=event.start, duration=duration)
    openadr_event = objects.Event(
        event_descriptor=objects.EventDescriptor(
            event_id=event.id,
            modification_number=sent.modification_number,
            market_context=f"oadr://openvpp/programs/{event.program_row_id}",
            event_status="far",  # the Event sets it from its times
            created_date_time=event.created_at,
        ),
        active_period=active_period,
        event_signals=[
            _signal(event, name=signal_name, kind=signal_type, payload=payload or 0, suffix="0"),
            _signal(
                event,
                name=dr_events.CHARGE_FLOOR_SIGNAL,
                kind="setpoint",
                payload=sent.soc_floor_percent,
                suffix="soc-floor",
            ),
        ],
        targets=[objects.Target(ven_id=ven_id)],
        response_required="always",
    )
    if sent.cancelled:
        openadr_event.event_descriptor.event_status = "cancelled"
    return openadr_event


@dataclass
class RunningProgramServer(BackgroundLoop):
    server: ProgramServer


async def start_program_server(*, db: Database, settings: Settings) -> RunningProgramServer:
    """The program server listening, with its housekeeping (telemetry retention) as a loop of
    the current event loop; ``shutdown()`` stops both."""
    server = ProgramServer(db=db, settings=settings)
    await server.start()
    stop = asyncio.Event()

    async def housekeeping() -> None:
        try:
            while not stop.is_set():
                try:
                    async with db.session() as session:
                        await telemetry.purge_readings(
                            session, retention_days=settings.device_readings_retention_days
                        )
                except Exception:
                    logger.exception("program server: housekeeping failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=HOUSEKEEPING_SECONDS)
        finally:
            await server.stop()
            logger.info("program server: stopped")

    task = asyncio.get_running_loop().create_task(housekeeping(), name="program-server")
    return RunningProgramServer(stop=stop, task=task, server=server)
