"""What a production ``serve`` must have before it starts: no development stand-in, and every
secret set. Checked once at start-up; every problem is named at once."""

from __future__ import annotations

from core.defaults import DEV_TENANT_SLUG, LOCAL_STRIPE_API_KEY, LOCAL_STRIPE_WEBHOOK_SECRET
from core.errors import ConfigurationError
from core.settings import Settings


def production_problems(settings: Settings) -> list[str]:
    """What a production ``serve`` lacks, each by its variable: empty when it may start."""
    if settings.is_development:
        return []
    problems = []
    if settings.kek is None:
        problems.append("OVPP_KEK is required in production (32 random bytes, base64)")
    if settings.metrics_token is None:
        problems.append("OVPP_METRICS_TOKEN is required in production (/metrics stays closed)")
    demo = [
        t.slug
        for t in settings.tenants
        if t.slug == DEV_TENANT_SLUG or t.issuer.rstrip("/") == settings.dev_issuer
    ]
    if demo:
        problems.append(
            "OVPP_TENANTS names the development provider's utility, demo data: " + ", ".join(demo)
        )
    if settings.deployer_private_key is not None:
        problems.append(
            "OVPP_DEPLOYER_PRIVATE_KEY must not be set: the operator's key (registry admin, "
            "forwarder owner, token minter) is for the operator's commands (deploy, "
            "relayer-authorize, registry grant-registrar), never a serving process"
        )
    if settings.resolved_program_server_in_serve:
        problems.extend(settings.program_server_problems())
    stand_ins = {
        "OVPP_STRIPE_API_KEY": (settings.stripe_api_key, LOCAL_STRIPE_API_KEY),
        "OVPP_STRIPE_WEBHOOK_SECRET": (settings.stripe_webhook_secret, LOCAL_STRIPE_WEBHOOK_SECRET),
    }
    for name, (value, stand_in) in stand_ins.items():
        if value is not None and value.get_secret_value() == stand_in:
            problems.append(f"{name} is the public development stand-in")
    return problems


def require_production_ready(settings: Settings) -> None:
    """Refuse to serve production with a development stand-in, naming everything missing."""
    problems = production_problems(settings)
    if problems:
        raise ConfigurationError("production needs: " + "; ".join(problems))
