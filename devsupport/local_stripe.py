"""A local Stripe API (PyPI ``localstripe``) as a child process: ``serve`` in development, and
the tests. DEVELOPMENT ONLY.

localstripe is a stateful fake of the Stripe API that also sends signed webhooks. Run through
this module rather than its own entry point it:
- listens on 127.0.0.1 only (its own entry point binds every interface);
- keeps its state in a file of ours (its own hard-codes ``/tmp/localstripe.pickle``, shared by
  every instance on the machine), so ``serve`` restarts with the payments it had;
- gets its webhook endpoint configured by ``configure_webhook`` (``POST /_config/webhooks/…``
  with url, secret and events; localstripe keeps that in memory only, so it is set on every
  start).
- keeps refunds as Stripe does: a refund can fail after it was accepted (``REFUND_FAIL_PATH``
  stands in for the card network saying so), and a failed refund no longer counts in its
  charge's ``amount_refunded``.
localstripe ignores Idempotency-Key and sends each event once, 1 s after it happens.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from core.defaults import LOCAL_STRIPE_CARD_JS_PATH
from core.settings import REPO_ROOT
from devsupport.child_process import ChildProcess

logger = logging.getLogger(__name__)

WEBHOOK_NAME = "ovpp-wallet"


class LocalStripe:
    def __init__(self, *, port: int, state_file: Path, log_file: Path | None = None) -> None:
        self.port = port
        self.state_file = state_file
        self.log_file = log_file
        self._child = ChildProcess("localstripe")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        output = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL
        command = [
            sys.executable, "-m", "devsupport.local_stripe",
            "--port", str(self.port),
            "--state-file", str(self.state_file),
        ]  # fmt: skip
        self._child.spawn(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=REPO_ROOT,
        )
        self._child.wait_until(
            lambda: answers(self.url), where=self.url, log_file=self.log_file, timeout=timeout
        )

    def stop(self) -> None:
        self._child.stop()


def answers(api_base: str) -> bool:
    """Something Stripe-like answers at ``api_base`` (an unauthenticated call gets 401)."""
    try:
        return httpx.get(f"{api_base}/v1/payment_intents", timeout=1).status_code in (200, 401)
    except httpx.HTTPError:
        return False


def configure_webhook(
    api_base: str,
    *,
    url: str,
    secret: str,
    name: str = WEBHOOK_NAME,
    events: list[str] | None = None,
) -> None:
    """Point localstripe's webhook ``name`` at ``url``, signed with ``secret``."""
    body: dict[str, object] = {"url": url, "secret": secret}
    if events is not None:
        body["events"] = events
    response = httpx.post(f"{api_base}/_config/webhooks/{name}", json=body, timeout=5)
    response.raise_for_status()


CARD_CONFIRM_PATH = "/js.stripe.com/v3/_confirm_card/"
"""Where that ``confirmCardPayment`` posts. Under ``/js.stripe.com/`` because localstripe lets
those paths through without a secret key; the PaymentIntent's client secret is checked instead,
as Stripe does for a publishable key."""

_CARD_CONFIRM_JS = """
(function () {
  const localStripe = Stripe;
  Stripe = (apiKey) => {
    const stripe = localStripe(apiKey);
    const completeAuthentication = stripe.confirmCardPayment;
    stripe.confirmCardPayment = async (clientSecret, data) => {
      const element = data && data.payment_method && data.payment_method.card;
      if (!element || !element.value) return {error: {message: 'Enter your card details.'}};
      const card = element.value.card;
      const intent = clientSecret.match(/^(pi_\\w+)_secret_/)[1];
      const body = new URLSearchParams({
        key: apiKey, client_secret: clientSecret, number: card.number.replace(/\\s/g, ''),
        exp_month: card.exp_month, exp_year: card.exp_year, cvc: card.cvc,
      });
      const response = await fetch(`${LOCALSTRIPE_BASE_API}%s${intent}`, {method: 'POST', body});
      const result = await response.json().catch(() => ({}));
      if (!response.ok || result.error) {
        return {error: result.error || {message: 'The card was not accepted.'}};
      }
      if (result.status === 'requires_action') return completeAuthentication(clientSecret);
      return {paymentIntent: result};
    };
    return stripe;
  };
  window.Stripe = Stripe;
})();
"""


async def _card_stripe_js(request: Any) -> Any:
    """localstripe's Stripe.js with ``confirmCardPayment(secret, {payment_method: {card}})``
    working as in Stripe.js (localstripe's own only completes 3-D Secure)."""
    from aiohttp import web
    from localstripe import server

    original = Path(server.__file__).with_name("localstripe-v3.js").read_text()
    return web.Response(
        text=original + _CARD_CONFIRM_JS % CARD_CONFIRM_PATH,
        content_type="application/javascript",
    )


async def _confirm_card(request: Any) -> Any:
    """Attach a card to a PaymentIntent and confirm it, authorized by its client secret."""
    from localstripe import resources, server
    from localstripe.errors import UserError

    form = await request.post()
    intent = resources.PaymentIntent._api_retrieve(request.match_info["id"])
    if (
        not str(form.get("key", "")).startswith("pk_")
        or form.get("client_secret") != intent.client_secret
    ):
        raise UserError(401, "Unauthorized")
    if intent.status not in ("requires_payment_method", "requires_confirmation"):
        raise UserError(400, f"The payment is {intent.status}")
    card = {name: str(form.get(name, "")) for name in ("number", "exp_month", "exp_year", "cvc")}
    try:
        method = resources.PaymentMethod._api_create(type="card", card=card)
    except UserError:
        raise
    except Exception as error:  # localstripe validates with assertions
        raise UserError(400, "Check the card number, expiry and CVC.") from error
    intent.payment_method = method.id
    intent._confirm(on_failure_now=intent._report_failure)
    return server.json_response(intent._export())


REFUND_FAIL_PATH = "/v1/refunds/{id}/_fail"
"""Development and tests only: the refund fails now, as a card refund fails at Stripe some days
after it was accepted (the card was closed, lost or stolen). Its status becomes ``failed`` with
the ``failure_reason`` posted (default ``expired_or_canceled_card``), its amount leaves the
charge's ``amount_refunded``, and ``charge.refund.updated`` and ``refund.failed`` are sent.
Stripe has no such call (its test card 4000 0000 0000 5126 fails every refund after a while);
under ``/v1/`` so it needs the secret key, like localstripe's own ``_authenticate``."""
REFUND_FAILURE_REASONS = frozenset(
    {"lost_or_stolen_card", "expired_or_canceled_card", "charge_for_pending_refund_disputed",
     "insufficient_funds", "declined", "merchant_request", "unknown"}
)  # fmt: skip


async def _fail_refund(request: Any) -> Any:
    from localstripe import resources, server
    from localstripe.errors import UserError
    from localstripe.webhooks import schedule_webhook

    form = await request.post()
    refund = resources.Refund._api_retrieve(request.match_info["id"])
    reason = str(form.get("failure_reason") or "expired_or_canceled_card")
    if reason not in REFUND_FAILURE_REASONS:
        raise UserError(400, f"Unknown failure_reason {reason!r}")
    if refund.status not in ("pending", "succeeded"):
        raise UserError(400, f"The refund is {refund.status}")
    refund.status = "failed"
    refund.failure_reason = reason
    for event_type in ("charge.refund.updated", "refund.failed"):
        schedule_webhook(resources.Event(event_type, refund))
    return server.json_response(refund._export())


def _keep_refunds_as_stripe_does(resources: Any) -> None:
    """Every refund has a ``failure_reason`` (``None`` until it fails), and a charge's
    ``amount_refunded`` counts only refunds that did not fail or get canceled."""
    create_refund = resources.Refund.__init__

    def refund_init(self: Any, *args: Any, **kwargs: Any) -> None:
        create_refund(self, *args, **kwargs)
        self.failure_reason = None

    def amount_refunded(charge: Any) -> int:
        return sum(
            refund.amount
            for refund in charge.refunds._list
            if refund.status not in ("failed", "canceled")
        )

    resources.Refund.__init__ = refund_init
    resources.Charge.amount_refunded = property(amount_refunded)


def _serve(port: int, state_file: Path) -> None:
    """The child process: localstripe's app with its state in ``state_file``, on loopback."""
    import pickle

    from aiohttp import web
    from localstripe import resources, server

    def load(store: resources.Store) -> None:
        with contextlib.suppress(FileNotFoundError, EOFError, pickle.UnpicklingError):
            with state_file.open("rb") as handle:
                saved = pickle.load(handle)  # noqa: S301 (our own file, written below)
            store.clear()
            dict.update(store, saved)

    def dump(store: resources.Store) -> None:
        temporary = state_file.with_suffix(".tmp")
        with temporary.open("wb") as handle:
            pickle.dump(dict(store), handle, protocol=pickle.HIGHEST_PROTOCOL)
        temporary.replace(state_file)

    server.app.router.add_post(CARD_CONFIRM_PATH + "{id}", _confirm_card)
    server.app.router.add_post(REFUND_FAIL_PATH, _fail_refund)
    _keep_refunds_as_stripe_does(resources)
    server.app.router.add_get(LOCAL_STRIPE_CARD_JS_PATH, _card_stripe_js)
    resources.Store.try_load_from_disk = load  # type: ignore[method-assign]
    resources.Store.dump_to_disk = dump  # type: ignore[method-assign]
    resources.store.try_load_from_disk()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    web.run_app(server.app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="localstripe on 127.0.0.1 with its own state")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state-file", type=Path, required=True)
    arguments = parser.parse_args()
    _serve(arguments.port, arguments.state_file)
