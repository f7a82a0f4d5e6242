"""The reference web app (``clients/web``, served at ``/app``) in a real browser: Debian's
chromium driven by npm ``playwright-core`` (``tests/browser/journey.mjs``) at a phone's viewport,
against a real ``ovpp-wallet serve`` with its anvil, development OpenID Provider, localstripe and
demo data. Screenshots of every step land in ``test-artifacts/web-app/``."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.cli import CLI, ovpp_wallet
from tests.support.serve import RunningServe, Stack, new_stack, serving

REPOSITORY = Path(__file__).resolve().parents[2]
JOURNEY_SCRIPT = REPOSITORY / "tests" / "browser" / "journey.mjs"
ARTIFACTS = REPOSITORY / "test-artifacts" / "web-app"
CHROMIUM = Path("/usr/bin/chromium")
JOURNEY_TIMEOUT_SECONDS = 300
STEPS = (
    "sign-in", "wallet", "send-quote", "send-confirmed", "history", "session-renewed",
    "device-programs", "enrollment-check", "enrolled-active", "opted-out", "next-event",
    "event-live", "card-form", "bought",
    "signed-out", "policy-enforced",
)  # fmt: skip

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Stack:
    return new_stack(tmp_path_factory.mktemp("web-app"))


@pytest.fixture(scope="module")
def served(stack: Stack) -> Iterator[RunningServe]:
    with serving(stack, run_name="web-app") as running:
        yield running


def test_config_points_the_app_at_the_provider_which_accepts_its_origin(
    stack: Stack, served: RunningServe
) -> None:
    config = httpx.get(f"{stack.api_url}/app/config.json", timeout=10).json()

    assert config["issuer"] == stack.issuer
    assert config["redirectUri"] == f"{stack.api_url}/app/callback"
    assert config["audience"] == "https://wallet.ovpp.local"
    assert {"wallet:read", "wallet:sign", "offline_access"} <= set(config["scope"].split())
    discovery = httpx.get(f"{stack.issuer}/.well-known/openid-configuration", timeout=10).json()
    preflight = httpx.options(
        discovery["token_endpoint"],
        headers={
            "Origin": stack.api_url,
            "Access-Control-Request-Method": "POST",
        },
        timeout=10,
    )
    assert preflight.headers.get("access-control-allow-origin") == stack.api_url


def test_the_app_its_callback_and_its_operations_are_served(
    stack: Stack, served: RunningServe
) -> None:
    page = httpx.get(f"{stack.api_url}/app/", timeout=10)
    callback = httpx.get(f"{stack.api_url}/app/callback?code=x&state=y", timeout=10)
    manifest = httpx.get(f"{stack.api_url}/app/manifest.webmanifest", timeout=10).json()
    operation = httpx.get(f"{stack.api_url}/app/operations/Viewer.graphql", timeout=10)

    assert page.status_code == callback.status_code == 200
    assert callback.text == page.text
    assert 'rel="manifest"' in page.text
    assert manifest["start_url"] == "/app/" and manifest["display"] == "standalone"
    for icon in manifest["icons"]:
        served_icon = httpx.get(f"{stack.api_url}{icon['src']}", timeout=10)
        assert served_icon.status_code == 200, icon
        if icon["type"] == "image/png":  # what Android's install prompt and iOS need
            assert _png_size(served_icon.content) == tuple(map(int, icon["sizes"].split("x")))
    assert {"192x192", "512x512"} <= {icon["sizes"] for icon in manifest["icons"]}
    touch = re.search(r'<link rel="apple-touch-icon" href="([^"]+)">', page.text)
    assert touch is not None
    touch_icon = httpx.get(f"{stack.api_url}{touch.group(1)}", timeout=10)
    assert _png_size(touch_icon.content) == (180, 180)
    assert httpx.get(f"{stack.api_url}/app/sw.js", timeout=10).status_code == 200
    assert operation.text == (REPOSITORY / "clients/operations/Viewer.graphql").read_text()


def test_the_app_has_its_policy_and_every_response_the_usual_headers(
    stack: Stack, served: RunningServe
) -> None:
    page = httpx.get(f"{stack.api_url}/app/", timeout=10)
    health = httpx.get(f"{stack.api_url}/healthz", timeout=10)

    policy = page.headers["content-security-policy"]
    assert f"connect-src 'self' {stack.issuer} http://127.0.0.1:{stack.stripe_port};" in policy
    assert f"script-src 'self' http://127.0.0.1:{stack.stripe_port}/js.stripe.com/" in policy
    assert page.headers["x-frame-options"] == "DENY"
    for response in (page, health):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
    assert "content-security-policy" not in health.headers


def test_the_customer_journey_on_a_phone(stack: Stack, served: RunningServe) -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)")
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    started = time.monotonic()
    admin = ovpp_wallet(
        stack.env, "dev-token", "--email", "ops@demo-utility.example", "--scope",
        "openid utility:admin", cwd=stack.logs_dir,
    )  # fmt: skip
    assert admin.returncode == 0, admin.stderr
    result = subprocess.run(
        ["node", str(JOURNEY_SCRIPT), "--app-url", f"{stack.api_url}/app/",
         "--artifacts", str(ARTIFACTS), "--chromium", str(CHROMIUM),
         "--admin-token", admin.stdout.strip(),
         "--device-command", json.dumps([str(CLI), "dev", "device", "--speed", "60"])],
        cwd=REPOSITORY, capture_output=True, text=True, timeout=JOURNEY_TIMEOUT_SECONDS,
        check=False, env=stack.env,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    report = _report(result, served)
    assert "error" not in report, (
        f"the journey stopped at {report.get('failedStep')}: {report['error']}\n"
        f"browser console: {report['console']}\nCSP violations: {report['cspViolations']}\n"
        f"screenshots in {ARTIFACTS}\n" + served.diagnostics()
    )
    # Sign-in, renewal, the subscription, localstripe's card form and revocation all ran under
    # the app's Content-Security-Policy without the browser refusing anything.
    assert report["cspViolations"] == []
    steps = {step["name"]: step for step in report["steps"]}
    assert tuple(steps) == STEPS

    for step in report["steps"]:
        layout = step["layout"]
        assert layout["scrollWidth"] <= layout["innerWidth"] == 390, (step["name"], layout)
        assert layout["smallTapTargets"] == [], (step["name"], layout["smallTapTargets"])
        assert layout["unlabelledInputs"] == [], (step["name"], layout["unlabelledInputs"])
        assert Path(step["screenshot"]).stat().st_size > 0

    assert steps["sign-in"]["heading"] == "Welcome"
    assert [focus["text"] for focus in steps["wallet"]["focusPath"]] == [
        "Skip to content",
        "Sign in",
    ]
    assert all(focus["outline"] != "none" for focus in steps["wallet"]["focusPath"])
    assert steps["wallet"]["email"] == "alice@example.com"
    assert steps["wallet"]["balances"] == {"OVPP": "1000", "USDC": "250"}
    assert steps["send-quote"]["fee"].startswith("Network fee: ")
    assert steps["send-quote"]["fee"].endswith(" USDC")
    assert steps["send-confirmed"] == steps["send-confirmed"] | {
        "status": "CONFIRMED",
        "via": "subscription",  # graphql-transport-ws, not the polling fallback
    }
    assert steps["history"]["latest"].startswith("−5 OVPP Sent to 0x0000")
    assert steps["history"]["kinds"][:2] == ["FEE", "SENT"]  # the fee, paid in USDC, and the send
    assert "RECEIVED" in steps["history"]["kinds"]
    assert steps["history"]["incoming"].startswith("+")
    # An expired access token is renewed with the refresh token, without a sign-in page.
    assert steps["session-renewed"] == steps["session-renewed"] | {
        "hadRefreshToken": True,
        "accessRenewed": True,
        "signInShown": False,
        "balances": {"OVPP": "995"},
    }
    assert steps["device-programs"]["device"] == "Voltstack VS-13.5"
    assert "Sponsored Home Battery Program" in steps["device-programs"]["programs"]
    assert steps["enrollment-check"] == steps["enrollment-check"] | {"fee": "5", "payer": "SPONSOR"}
    assert steps["enrolled-active"]["status"] == "ACTIVE"
    # The enrolled battery (`ovpp-wallet dev device`): an event declined before its start, the
    # next one announced with the customer's limit, then live: the battery gives power.
    assert steps["opted-out"]["response"] == "OPT_OUT"
    assert steps["next-event"] == steps["next-event"] | {"status": "SCHEDULED", "keeps": True}
    assert steps["event-live"]["powerKw"] == -3.0 and 30 <= steps["event-live"]["soc"] < 80
    assert steps["card-form"]["balanceBefore"] == "995"  # 1000 less the 5 sent (fee in USDC)
    assert Decimal(steps["bought"]["balanceAfter"]) == Decimal("995") + Decimal(
        steps["card-form"]["tokens"]
    )
    # Signing out forgets both tokens and revokes the refresh token at the provider.
    assert steps["signed-out"] == steps["signed-out"] | {
        "hadRefreshToken": True,
        "tokensLeft": [],
        "revocationStatus": 200,
        "renewalAfterSignOut": {"status": 400, "error": "invalid_grant"},
    }
    # ... and the policy is enforced: an injected inline script is refused, and both of the
    # journey's detectors (the page's event, chromium's console) saw the refusal.
    assert steps["policy-enforced"] == steps["policy-enforced"] | {
        "injectedScriptRan": False,
        "directive": "script-src-elem",
        "detected": {"events": 1, "consoleMessages": 1},
    }
    print(
        f"\nbrowser journey: {report['seconds']:.1f} s in the browser, {elapsed:.1f} s with "
        f"chromium's start; first load of /app transferred "
        f"{sum(report['firstLoadBytes'].values())} bytes in {len(report['firstLoadBytes'])} "
        f"files; screenshots in {ARTIFACTS}"
    )


def _report(result: subprocess.CompletedProcess[str], served: RunningServe) -> dict[str, Any]:
    lines = result.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        pytest.fail(
            f"journey.mjs printed no report (exit {result.returncode})\n"
            f"stdout: {result.stdout[-3000:]}\nstderr: {result.stderr[-3000:]}\n"
            + served.diagnostics()
        )


def _png_size(content: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (and that it is a PNG at all)."""
    assert content[:8] == b"\x89PNG\r\n\x1a\n" and content[12:16] == b"IHDR", content[:16]
    return int.from_bytes(content[16:20], "big"), int.from_bytes(content[20:24], "big")
