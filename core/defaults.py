"""Fixed names the settings and the development stack share: the embedded development
provider's client and utility, localstripe's public stand-ins, the system issuers' scheme."""

from __future__ import annotations

# Development stand-ins for the embedded localstripe (which accepts any `sk_…` key). Public, and
# used only when OVPP_ENVIRONMENT=development.
LOCAL_STRIPE_API_KEY = "sk_test_ovpp_localstripe"
LOCAL_STRIPE_WEBHOOK_SECRET = "whsec_ovpp_localstripe_development"  # noqa: S105
LOCAL_STRIPE_CARD_JS_PATH = "/js.stripe.com/v3/ovpp-card.js"
"""Where the embedded localstripe serves its stand-in Stripe.js, which the web app loads."""
DEV_OIDC_CLIENT_ID = "ovpp-dev"
"""The embedded development provider's one public client (the web app and dev-token use it)."""
DEV_TENANT_SLUG = "demo-utility"
"""The embedded development provider's utility: trusted in development only."""
SYSTEM_ISSUER_PREFIX = "urn:"
"""The issuer of a system tenant (the onramp's platform tenant) is a URN: no token is ever
validated against one, and configuration never names one (an issuer there is a URL)."""
