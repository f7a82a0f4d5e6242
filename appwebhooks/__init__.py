"""App webhooks: events a utility's backend receives (``activity.received``,
``transaction.final``, ``enrollment.changed``), signed per the Standard Webhooks spec and
delivered at least once from a durable outbox (docs/webhooks.md).

Any domain above this one emits into the outbox with ``appwebhooks.service.emit`` inside the
transaction of the state change that causes the event; the delivery worker
(``appwebhooks.delivery``) posts it to each of the utility's endpoints, retrying with backoff.
"""
