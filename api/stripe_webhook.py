"""``POST /webhooks/stripe``: a plain starlette route (no GraphQL on this path).

The signature is checked on the raw body; a forged, stale, future-dated or unsigned request,
or a signed body that is not a Stripe event (``null``, ``123``, a list), gets 400 and changes
nothing. A body over ``OVPP_STRIPE_WEBHOOK_MAX_BODY_BYTES`` never gets here (413, before it is
read: ``api.middleware.BodySizeLimitMiddleware``).

A verified event is stored once (a redelivery answers 200 again and stores nothing) and
committed before the answer, by one ``INSERT … ON CONFLICT DO NOTHING`` on an autocommit
connection (no transaction around it: one round trip); acting on it is the onramp
processor's job, which this route wakes. So Stripe hears 2xx only for an event that is safely
stored, and a crash after that point loses nothing.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse

from api.container import Services
from onramp.errors import InvalidWebhook
from onramp.events import record_event

logger = logging.getLogger(__name__)


async def stripe_webhook(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    if services.stripe is None:
        return JSONResponse({"error": "the card onramp is not configured"}, status_code=503)
    payload = await request.body()  # at most OVPP_STRIPE_WEBHOOK_MAX_BODY_BYTES (api.middleware)
    try:
        event = services.stripe.verify(payload, request.headers.get("stripe-signature"))
    except InvalidWebhook as error:
        logger.warning("refused a Stripe webhook: %s", error.message)
        return JSONResponse({"error": error.message}, status_code=400)
    async with services.db.autocommit() as connection:
        stored = await record_event(connection, event)
    running = getattr(request.app.state, "onramp_processor", None)
    if running is not None:  # the processor of this process acts on it now, not at its next poll
        running.processor.wake()
    return JSONResponse({"received": True, "duplicate": not stored})
