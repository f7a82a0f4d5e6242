"""Headless sign-in against the development OpenID Provider (``devsupport/oidc-provider.mjs``).

DEVELOPMENT AND TESTS ONLY. :func:`obtain_access_token` performs the real OAuth 2.0
authorization-code flow with PKCE S256, the way a native app does through the system
browser, except that the "browser" is an ``httpx`` client with a cookie jar:

1. ``GET {issuer}/.well-known/openid-configuration`` (OIDC discovery);
2. build the authorization URL with authlib's ``AsyncOAuth2Client`` (state + S256 challenge);
3. ``GET /auth?...`` -> 303 ``/interaction/<uid>`` -> login form (devInteractions);
4. ``POST /interaction/<uid>`` (login = email, any password) -> 303 ``/auth/<uid>``;
5. ``GET /auth/<uid>`` -> 303 ``<redirect_uri>?code=...&state=...&iss=...`` (never fetched);
   should the provider ask for consent instead, its form is submitted the same way;
6. ``POST /token`` with the code and the PKCE verifier (authlib) -> RFC 9068 JWT access token.

Invariants: the redirect URI is never connected to; ``state`` and (when present) the RFC 9207
``iss`` response parameter are checked; every failure raises :class:`DevLoginError` naming the
step, the HTTP status and a snippet of the page.
"""

from __future__ import annotations

import hashlib
import logging
import re
import warnings
from dataclasses import dataclass, field
from html import unescape
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
from authlib.common.security import generate_token
from authlib.deprecate import AuthlibDeprecationWarning  # installs authlib's "always" filter

from core.defaults import DEV_OIDC_CLIENT_ID

with warnings.catch_warnings():
    # authlib 1.9 nudges toward its httpx2 integration; httpx is the client this project pins.
    warnings.filterwarnings(
        "ignore", category=AuthlibDeprecationWarning, message="The httpx module is deprecated"
    )
    from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

logger = logging.getLogger(__name__)

DEFAULT_SCOPE = "openid email wallet:read wallet:sign"
DEFAULT_REDIRECT_URI = "http://127.0.0.1/callback"

MAXIMUM_BROWSER_STEPS = 12
"""Redirects plus form submissions allowed before the walk is declared stuck."""

HTTP_TIMEOUT_SECONDS = 10.0
PAGE_SNIPPET_CHARACTERS = 400
DEV_LOGIN_PASSWORD = "dev-password-ignored"  # noqa: S105 - the dev provider ignores passwords


class DevLoginError(RuntimeError):
    """A step of the headless development sign-in failed.

    :ivar step: short name of the failing step (``discovery``, ``authorize``, ``token``...).
    :ivar status_code: HTTP status of the response that failed, if there was one.
    :ivar page_snippet: the start of that response's text (tags stripped), if any.
    """

    def __init__(
        self,
        message: str,
        *,
        step: str,
        status_code: int | None = None,
        page_snippet: str | None = None,
    ) -> None:
        details = [f"[{step}] {message}"]
        if status_code is not None:
            details.append(f"HTTP {status_code}")
        if page_snippet:
            details.append(f"page: {page_snippet}")
        super().__init__(" | ".join(details))
        self.step = step
        self.status_code = status_code
        self.page_snippet = page_snippet


def dev_subject(email: str) -> str:
    """The ``sub`` the development provider assigns to ``email``.

    ``"dev-"`` + the first 24 hex characters of sha256 of the lowercased, trimmed email;
    identical to ``devAccountIdFor`` in ``devsupport/oidc-provider.mjs``.
    """
    normalized_email = email.strip().lower()
    return "dev-" + hashlib.sha256(normalized_email.encode("utf-8")).hexdigest()[:24]


async def obtain_access_token(
    *,
    issuer: str,
    email: str,
    scope: str = DEFAULT_SCOPE,
    client_id: str = DEV_OIDC_CLIENT_ID,
    redirect_uri: str = DEFAULT_REDIRECT_URI,
    resource: str | None = None,
) -> str:
    """Sign ``email`` in at the development provider ``issuer`` and return an access token.

    Runs the full authorization-code + PKCE S256 flow headlessly (see the module docstring).
    ``resource`` is sent as the RFC 8707 resource indicator on both the authorization and
    the token request when given; without it the provider uses its default resource (the
    wallet API), so the token is a JWT either way.

    :raises DevLoginError: when discovery, the login walk, or the token exchange fails.
    """
    issuer = issuer.rstrip("/")
    async with httpx.AsyncClient(follow_redirects=False, timeout=HTTP_TIMEOUT_SECONDS) as browser:
        provider_metadata = await _discover_provider_metadata(browser, issuer=issuer)
        authorization_endpoint = _required_metadata_url(provider_metadata, "authorization_endpoint")
        token_endpoint = _required_metadata_url(provider_metadata, "token_endpoint")

        async with AsyncOAuth2Client(
            client_id=client_id,
            token_endpoint_auth_method="none",  # noqa: S106 - public client, no secret
            scope=scope,
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            timeout=HTTP_TIMEOUT_SECONDS,
        ) as oauth_client:
            code_verifier = generate_token(64)
            extra_authorization_parameters = {"resource": resource} if resource else {}
            authorization_url, expected_state = oauth_client.create_authorization_url(
                authorization_endpoint,
                code_verifier=code_verifier,
                **extra_authorization_parameters,
            )

            authorization_code = await _walk_login_to_authorization_code(
                browser,
                authorization_url=authorization_url,
                email=email,
                redirect_uri=redirect_uri,
                expected_state=expected_state,
                expected_issuer=issuer,
            )

            token_response = await _exchange_code(
                oauth_client,
                token_endpoint=token_endpoint,
                code=authorization_code,
                code_verifier=code_verifier,
                resource=resource,
            )

    access_token = token_response.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise DevLoginError(
            f"token response has no access_token (keys: {sorted(token_response)})", step="token"
        )
    return access_token


# ------------------------------------------------------------------------------------ helpers
async def _exchange_code(
    oauth_client: AsyncOAuth2Client,
    *,
    token_endpoint: str,
    code: str,
    code_verifier: str,
    resource: str | None,
) -> dict[str, Any]:
    """The token request for ``code`` (with the PKCE verifier); the provider's answer."""
    logger.debug("exchanging authorization code at %s", token_endpoint)
    extra_token_parameters = {"resource": resource} if resource else {}
    try:
        token_response = await oauth_client.fetch_token(
            token_endpoint,
            grant_type="authorization_code",
            code=code,
            code_verifier=code_verifier,
            **extra_token_parameters,
        )
    except OAuthError as error:
        raise DevLoginError(
            f"token endpoint refused the code: {error.error}: {error.description}",
            step="token",
        ) from error
    except httpx.HTTPStatusError as error:
        raise DevLoginError(
            f"token endpoint {token_endpoint} failed",
            step="token",
            status_code=error.response.status_code,
            page_snippet=_page_snippet(error.response.text),
        ) from error
    except httpx.HTTPError as error:
        raise DevLoginError(
            f"cannot reach token endpoint {token_endpoint}: {error!r}", step="token"
        ) from error
    return token_response


async def _discover_provider_metadata(browser: httpx.AsyncClient, *, issuer: str) -> dict:
    """Fetch and sanity-check ``{issuer}/.well-known/openid-configuration``."""
    discovery_url = f"{issuer}/.well-known/openid-configuration"
    try:
        response = await browser.get(discovery_url)
    except httpx.HTTPError as error:
        raise DevLoginError(f"cannot reach {discovery_url}: {error!r}", step="discovery") from error
    if response.status_code != 200:
        raise DevLoginError(
            f"GET {discovery_url} failed",
            step="discovery",
            status_code=response.status_code,
            page_snippet=_page_snippet(response.text),
        )
    try:
        provider_metadata = response.json()
    except ValueError as error:
        raise DevLoginError(
            "discovery document is not JSON",
            step="discovery",
            status_code=response.status_code,
            page_snippet=_page_snippet(response.text),
        ) from error
    if not isinstance(provider_metadata, dict) or provider_metadata.get("issuer") != issuer:
        announced = provider_metadata.get("issuer") if isinstance(provider_metadata, dict) else None
        raise DevLoginError(
            f"discovery document names issuer {announced!r}, expected {issuer!r}",
            step="discovery",
        )
    return provider_metadata


def _required_metadata_url(provider_metadata: dict, name: str) -> str:
    value = provider_metadata.get(name)
    if not isinstance(value, str) or not value:
        raise DevLoginError(f"discovery document has no {name}", step="discovery")
    return value


async def _walk_login_to_authorization_code(
    browser: httpx.AsyncClient,
    *,
    authorization_url: str,
    email: str,
    redirect_uri: str,
    expected_state: str,
    expected_issuer: str,
) -> str:
    """Follow redirects and submit the provider's forms until it redirects to ``redirect_uri``.

    Returns the authorization code. The redirect URI itself is never requested.
    """
    logger.debug("authorization request: %s", authorization_url)
    request = browser.build_request("GET", authorization_url)
    for _step_number in range(MAXIMUM_BROWSER_STEPS):
        try:
            response = await browser.send(request)
        except httpx.HTTPError as error:
            raise DevLoginError(
                f"cannot reach {_without_query(str(request.url))}: {error!r}", step="authorize"
            ) from error
        current_url = str(response.request.url)

        if response.is_redirect:
            location = response.headers.get("location", "")
            next_url = urljoin(current_url, location)
            if _is_same_endpoint(next_url, redirect_uri):
                return _authorization_code_from_redirect(
                    next_url,
                    expected_state=expected_state,
                    expected_issuer=expected_issuer,
                )
            logger.debug("redirect %d %s -> %s", response.status_code, current_url, next_url)
            request = browser.build_request("GET", next_url)
            continue

        page_text = response.text
        if response.status_code != 200:
            raise DevLoginError(
                f"{request.method} {_without_query(current_url)} failed",
                step="authorize",
                status_code=response.status_code,
                page_snippet=_page_snippet(page_text),
            )
        form = _first_form(page_text)
        if form is None:
            raise DevLoginError(
                f"{_without_query(current_url)} returned a page without a form "
                "(expected the login or consent form)",
                step="authorize",
                status_code=response.status_code,
                page_snippet=_page_snippet(page_text),
            )
        form_fields = dict(form.hidden_fields)
        if "login" in form.input_names:
            form_fields["login"] = email
            if "password" in form.input_names:
                form_fields["password"] = DEV_LOGIN_PASSWORD
            logger.debug("submitting login form for %s", email)
        else:
            logger.debug("submitting %s form", form_fields.get("prompt", "unnamed"))
        form_action_url = urljoin(current_url, form.action or current_url)
        if form.method == "get":
            request = browser.build_request("GET", form_action_url, params=form_fields)
        else:
            request = browser.build_request("POST", form_action_url, data=form_fields)

    raise DevLoginError(
        f"no redirect to {redirect_uri} after {MAXIMUM_BROWSER_STEPS} steps", step="authorize"
    )


def _without_query(url: str) -> str:
    """``url`` without its query string (authorization URLs are long and say little)."""
    return url.split("?", 1)[0]


def _is_same_endpoint(url: str, endpoint: str) -> bool:
    """True when ``url`` points at ``endpoint`` (scheme, host, port and path; query ignored)."""
    url_parts, endpoint_parts = urlsplit(url), urlsplit(endpoint)
    return (
        url_parts.scheme.lower() == endpoint_parts.scheme.lower()
        and url_parts.netloc.lower() == endpoint_parts.netloc.lower()
        and (url_parts.path or "/") == (endpoint_parts.path or "/")
    )


def _authorization_code_from_redirect(
    redirect_url: str, *, expected_state: str, expected_issuer: str
) -> str:
    """Validate the authorization response in ``redirect_url`` and return its code."""
    parameters = {
        name: values[0] for name, values in parse_qs(urlsplit(redirect_url).query).items()
    }
    if "error" in parameters:
        raise DevLoginError(
            f"authorization failed: {parameters['error']}: "
            f"{parameters.get('error_description', '(no description)')}",
            step="authorize",
        )
    if parameters.get("state") != expected_state:
        raise DevLoginError(
            f"state mismatch in authorization response ({parameters.get('state')!r})",
            step="authorize",
        )
    returned_issuer = parameters.get("iss")
    if returned_issuer is not None and returned_issuer != expected_issuer:
        raise DevLoginError(
            f"authorization response iss {returned_issuer!r} is not {expected_issuer!r}",
            step="authorize",
        )
    authorization_code = parameters.get("code")
    if not authorization_code:
        raise DevLoginError("authorization response has no code", step="authorize")
    return authorization_code


@dataclass
class _HtmlForm:
    action: str | None
    method: str
    hidden_fields: list[tuple[str, str]] = field(default_factory=list)
    input_names: set[str] = field(default_factory=set)


class _FirstFormParser(HTMLParser):
    """Collects the first ``<form>`` of a page: action, method and its input fields."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.form: _HtmlForm | None = None
        self._inside_first_form = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form" and self.form is None:
            self.form = _HtmlForm(
                action=attributes.get("action") or None,
                method=(attributes.get("method") or "get").lower(),
            )
            self._inside_first_form = True
        elif tag in {"input", "button"} and self._inside_first_form and self.form is not None:
            input_name = attributes.get("name")
            if not input_name:
                return
            self.form.input_names.add(input_name)
            if tag == "input" and attributes.get("type", "text").lower() == "hidden":
                self.form.hidden_fields.append((input_name, attributes.get("value", "")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._inside_first_form = False


def _first_form(page_text: str) -> _HtmlForm | None:
    parser = _FirstFormParser()
    parser.feed(page_text)
    parser.close()
    return parser.form


def _page_snippet(page_text: str) -> str:
    """The start of a page's visible text, whitespace collapsed, for error messages."""
    without_head = re.sub(r"(?is)<(script|style|head)\b.*?</\1>", " ", page_text)
    visible_text = unescape(re.sub(r"(?s)<[^>]+>", " ", without_head))
    return " ".join(visible_text.split())[:PAGE_SNIPPET_CHARACTERS]
