"""Per-request context: the services, the caller (resolved lazily, once), one DB session and
the DataLoaders. Over a WebSocket, per operation: ``for_operation``."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from functools import cached_property
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from api.container import Services
from api.graphql.loaders import Loaders
from core.errors import Unauthenticated
from identity.principal import Principal, Scope
from identity.service import CustomerAccount, provision


class RequestContext:
    def __init__(
        self,
        *,
        services: Services,
        request: HTTPConnection,
        response: Any = None,
        authorization: str | None = None,
        on_principal: Callable[[Principal], None] | None = None,
    ) -> None:
        self.services = services
        self.request = request
        self.response = response
        self.request_id: str = request.scope.get("state", {}).get("request_id", "-")
        self._authorization = authorization
        self._on_principal = on_principal
        self._principal: Principal | None = None
        self._account: CustomerAccount | None = None
        self._session: AsyncSession | None = None
        # graphql-transport-ws: the connection_init payload (strawberry sets it); a client sends
        # {"Authorization": "Bearer …"} there because browsers cannot set WebSocket headers.
        self.connection_params: dict[str, Any] | None = None

    def for_operation(self, *, on_principal: Callable[[Principal], None]) -> RequestContext:
        """A fresh context for one operation of this WebSocket connection: its own caller
        (the token checked again, ``exp`` included), account, session and loaders, so that
        operations running side by side on one socket share nothing but the connection.
        ``on_principal`` hears of the caller once the token has passed."""
        context = RequestContext(
            services=self.services,
            request=self.request,
            response=self.response,
            authorization=self._authorization,
            on_principal=on_principal,
        )
        context.connection_params = self.connection_params
        return context

    async def principal(self) -> Principal:
        if self._principal is None:
            self._principal = await self.services.token_validator.validate(self._bearer_token())
            if self._on_principal is not None:
                self._on_principal(self._principal)
        return self._principal

    async def account(self, scope: Scope = Scope.WALLET_READ) -> CustomerAccount:
        """The signed-in customer and wallet (provisioned on first use), after a scope check."""
        principal = await self.principal()
        principal.require(scope)
        if self._account is None:
            cache = self.services.account_cache
            self._account = cache.get(principal)
            if self._account is None:
                self._account = await provision(
                    self.services.db, principal=principal, keyring=self.services.keyring
                )
                cache.put(principal, self._account)
        return self._account

    @cached_property
    def loaders(self) -> Loaders:
        return Loaders(self.services.db)

    def read_session(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A short session of its own, for query resolvers: GraphQL resolves sibling fields
        concurrently and one ``AsyncSession`` must not be used by two at once."""
        return self.services.db.session()

    async def session(self) -> AsyncSession:
        """The request's one session, for mutations (which GraphQL runs one after another);
        committed (or rolled back) once, when the operation ends. Except by the fields that
        must outlive the rest of the document, which commit it themselves: ``transfer`` (the
        commit makes a sponsored transfer's reservation on PostgreSQL and may refuse it, as a
        typed result), and ``createOnrampPayment`` and a CARD ``enroll`` (the payment's row is
        committed before its client secret is returned, so a later failing field cannot undo
        a payment the customer can make). An operation carries at most one such value-moving
        field (``extensions.OneValueMovingMutation``); what earlier fields wrote (a device, a
        quote) is committed with it."""
        if self._session is None:
            self._session = self.services.db.sessionmaker()
        return self._session

    async def rollback(self) -> None:
        """Undo this request's writes (an expected failure: nothing may be charged or taken)."""
        if self._session is not None:
            await self._session.rollback()

    async def finish(self, *, succeeded: bool) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        try:
            if succeeded:
                await session.commit()
            else:
                await session.rollback()
        finally:
            await session.close()

    def _bearer_token(self) -> str:
        header = self._authorization
        if header is None:
            header = self.request.headers.get("authorization")
        if header is None and self.connection_params:
            value = self.connection_params.get("Authorization") or self.connection_params.get(
                "authorization"
            )
            header = value if isinstance(value, str) else None
        if not header:
            raise Unauthenticated(
                "sign in first: send an access token as 'Authorization: Bearer …'"
            )
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("the Authorization header must be 'Bearer <access token>'")
        return token.strip()
