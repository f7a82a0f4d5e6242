"""The GraphQL schema: a thin skin over the domains."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import strawberry
from graphql import GraphQLError
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import (
    AddValidationRules,
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.types import ExecutionContext, ExecutionResult

from api.context import RequestContext
from api.graphql import (
    activity,
    admin,
    customer_events,
    devices,
    events,
    onramp,
    relayer,
    rewards,
    webhooks,
)
from api.graphql import programs as enrollment
from api.graphql.activity import ActivityItem
from api.graphql.admin import AdminProgram, FundSponsorshipResult, UtilityAdmin
from api.graphql.common import Chain, TokenType
from api.graphql.customer_events import (
    OptOutResult,
    ProgramEventUpdate,
    SetEnrollmentPreferencesResult,
)
from api.graphql.devices import AddDeviceResult, DeviceModel
from api.graphql.events import CancelEventResult, CreateEventResult
from api.graphql.extensions import (
    MASKED_MESSAGE,
    OneValueMovingMutation,
    SpecSelectionSets,
    UnitOfWork,
    coded_refusal,
    is_expected,
    masked,
    should_mask,
)
from api.graphql.onramp import CreateOnrampPaymentResult, OnrampQuoteResult
from api.graphql.programs import EnrollmentCheck, EnrollResult, Program, UnenrollResult
from api.graphql.relayer import FeeQuote, Transaction, TransferResult
from api.graphql.rewards import SettleEventResult
from api.graphql.wallet import Viewer
from api.graphql.webhooks import (
    CreateWebhookEndpointResult,
    WebhookEndpoint,
    WebhookEndpointSecret,
)
from core.settings import Settings
from identity.principal import Scope

logger = logging.getLogger("api.graphql")

Info = strawberry.Info[RequestContext, None]


@strawberry.type
class Query:
    @strawberry.field(description="The signed-in customer. Needs the wallet:read scope.")
    async def viewer(self, info: Info) -> Viewer:
        return Viewer.from_account(await info.context.account(Scope.WALLET_READ))

    transaction: Transaction = strawberry.field(
        resolver=relayer.transaction, description="One of the viewer's transactions."
    )

    utility_admin: UtilityAdmin = strawberry.field(
        resolver=admin.utility_admin,
        description="The administrator's own utility (scope utility:admin).",
    )
    device_models: list[DeviceModel] = strawberry.field(
        resolver=devices.device_models,
        description="Device models registered in the OpenVPP registry (the app's device picker).",
    )
    programs: list[Program] = strawberry.field(
        resolver=enrollment.programs,
        description="Programs open at a site, optionally for one device type.",
    )
    check_enrollment: EnrollmentCheck = strawberry.field(
        resolver=enrollment.check_enrollment,
        description="Readiness, fee, who pays, and every capability check.",
    )

    @strawberry.field(description="The chain the wallets live on.")
    def chain(self, info: Info) -> Chain:
        profile = info.context.services.chain.profile
        return Chain(chain_id=profile.chain_id, name=profile.name)

    @strawberry.field(description="The tokens a wallet holds, the native gas token last.")
    def tokens(self, info: Info) -> list[TokenType]:
        return [TokenType.from_info(token) for token in info.context.services.chain.tokens]


@strawberry.type
class Mutation:
    quote_transfer: FeeQuote = strawberry.field(
        resolver=relayer.quote_transfer,
        description="Price a transfer's gas in OVPP or stablecoin (or show it sponsored).",
    )
    transfer: TransferResult = strawberry.field(  # type: ignore[valid-type]
        resolver=relayer.transfer,
        description="Send tokens without gas. Needs wallet:sign. Idempotent per key.",
    )
    register_utility: UtilityAdmin = strawberry.field(
        resolver=admin.register_utility,
        description="Utility admin: register or update the utility in the registry, as "
        "relayed transactions (no key of the API's): `registryChanges` follows the change to "
        "CONFIRMED, when the catalog shows it. An identical record sends nothing.",
    )
    upsert_program: AdminProgram = strawberry.field(
        resolver=admin.upsert_program,
        description="Utility admin: publish or change a program, as a relayed transaction of "
        "the utility's wallet; the catalog follows once its `lastChange` is CONFIRMED (a new "
        "program is not offered until then).",
    )
    fund_sponsorship: FundSponsorshipResult = strawberry.field(  # type: ignore[valid-type]
        resolver=admin.fund_sponsorship,
        description="Utility admin: fund the gas sponsorship with the utility wallet's OVPP or "
        "stablecoin, sent to the fee treasury; the funds grow once that transfer is confirmed. "
        "Idempotent per key.",
    )
    create_event: CreateEventResult = strawberry.field(  # type: ignore[valid-type]
        resolver=events.create_event,
        description="Utility admin: a demand-response event for every device of the program's "
        "ACTIVE enrollments, sent by the program server at their next poll; their answers "
        "show in `utilityAdmin { events }`. Idempotent per key.",
    )
    cancel_event: CancelEventResult = strawberry.field(  # type: ignore[valid-type]
        resolver=events.cancel_event,
        description="Utility admin: cancel an event; its devices see the cancellation at their "
        "next poll. Cancelling again changes nothing.",
    )
    create_webhook_endpoint: CreateWebhookEndpointResult = strawberry.field(  # type: ignore[valid-type]
        resolver=webhooks.create_webhook_endpoint,
        description="Utility admin: add an app webhook endpoint; its signing secret is in the "
        "answer, and only there.",
    )
    rotate_webhook_secret: WebhookEndpointSecret = strawberry.field(
        resolver=webhooks.rotate_webhook_secret,
        description="Utility admin: a new signing secret for an endpoint (shown once); the "
        "attempts from now on are signed with it.",
    )
    delete_webhook_endpoint: WebhookEndpoint = strawberry.field(
        resolver=webhooks.delete_webhook_endpoint,
        description="Utility admin: delete an endpoint; its pending deliveries fail, its log "
        "stays.",
    )
    settle_event: SettleEventResult = strawberry.field(  # type: ignore[valid-type]
        resolver=rewards.settle_event,
        description="Utility admin: settle an ended event now (ended events settle by themselves "
        "after the grace period): its contribution records, the root published and funded from "
        "the utility's wallet, then the claims. Settling again returns the same settlement.",
    )
    set_enrollment_preferences: SetEnrollmentPreferencesResult = strawberry.field(  # type: ignore[valid-type]
        resolver=customer_events.set_enrollment_preferences,
        description="The customer's limits for an enrollment's device (reserve state of charge, "
        "a target by a time of day); its events not yet started follow them. Needs wallet:sign.",
    )
    opt_out: OptOutResult = strawberry.field(  # type: ignore[valid-type]
        resolver=customer_events.opt_out,
        description="Decline an event for the customer's devices, before it starts: a device "
        "that has it gets it cancelled, one that has not never gets it. Needs wallet:sign.",
    )
    add_device: AddDeviceResult = strawberry.field(  # type: ignore[valid-type]
        resolver=devices.add_device, description="Register a device at a site."
    )
    enroll: EnrollResult = strawberry.field(  # type: ignore[valid-type]
        resolver=enrollment.enroll,
        description="Enroll a device in a program through the OpenVPP registry. Needs wallet:sign.",
    )
    unenroll: UnenrollResult = strawberry.field(  # type: ignore[valid-type]
        resolver=enrollment.unenroll,
        description="Disconnect an ACTIVE enrollment in the registry. Needs wallet:sign.",
    )
    quote_onramp: OnrampQuoteResult = strawberry.field(  # type: ignore[valid-type]
        resolver=onramp.quote_onramp,
        description="Price a card purchase of OVPP or stablecoin: name the fiat or the tokens.",
    )
    create_onramp_payment: CreateOnrampPaymentResult = strawberry.field(  # type: ignore[valid-type]
        resolver=onramp.create_onramp_payment,
        description="Start a card payment for a quote; returns the Stripe client secret for the "
        "app's payment sheet. The tokens arrive once the payment succeeds. Idempotent per key.",
    )


@strawberry.type
class Subscription:
    transaction_updates: Transaction = strawberry.subscription(
        resolver=relayer.transaction_updates,
        description="The transaction now and at each status change, until final.",
    )
    wallet_activity: ActivityItem = strawberry.subscription(
        resolver=activity.wallet_activity,
        description="Each new or changed item of the signed-in wallet's activity (an incoming "
        "transfer within a few seconds of its block). Needs wallet:read.",
    )
    program_events: ProgramEventUpdate = strawberry.subscription(
        resolver=customer_events.program_events,
        description="The customer's devices' events: those not ended when it starts, then each "
        "one announced, started, ended, cancelled or opted out. Needs wallet:read.",
    )


class WalletSchema(strawberry.Schema):
    """Logs unexpected errors with the request id (before they are masked); counts them."""

    unexpected_error_count = 0

    async def execute(self, *args: Any, **kwargs: Any) -> ExecutionResult:
        result = await super().execute(*args, **kwargs)
        # MaskErrors masks when the operation hook ends, which an exception escaping an
        # extension or a validation rule skips: strawberry then answers with the exception's
        # own message. Mask those here (the ones MaskErrors already masked pass unchanged).
        if result.errors:
            result.errors = [coded_refusal(masked(error)) for error in result.errors]
        return result

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        context = execution_context.context if execution_context else None
        request_id = getattr(context, "request_id", "-")
        for error in errors:
            if is_expected(error):
                logger.debug("request %s: %s", request_id, error.message)
            else:
                WalletSchema.unexpected_error_count += 1
                logger.error(
                    "request %s: unexpected error at %s",
                    request_id,
                    error.path,
                    exc_info=error.original_error,
                )


def build_schema(
    settings: Settings, *, extensions: Sequence[type[SchemaExtension]] = ()
) -> strawberry.Schema:
    """The schema, with ``extensions`` (e.g. the metrics' operation counter) run first."""
    # The depth and alias limiters are validation rules whose classes are made per instance;
    # make them once so the validation cache (keyed by the rule classes) hits on every request.
    limit_rules = [
        *QueryDepthLimiter(max_depth=settings.graphql_max_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=settings.graphql_max_aliases).validation_rules,
    ]
    if not settings.resolved_graphql_introspection:
        # Off in production by default: apps build on the published clients/schema.graphql.
        limit_rules.append(NoSchemaIntrospectionCustomRule)
    return WalletSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        # Factories, not instances: each request gets fresh extension objects (they hold the
        # execution context); the parse and validation caches behind them are shared.
        extensions=[
            *extensions,
            lambda: ParserCache(maxsize=512),
            lambda: MaxTokensLimiter(max_token_count=settings.graphql_max_tokens),
            SpecSelectionSets,
            lambda: AddValidationRules([*limit_rules, OneValueMovingMutation]),
            lambda: ValidationCache(maxsize=512),
            lambda: MaskErrors(should_mask_error=should_mask, error_message=MASKED_MESSAGE),
            UnitOfWork,
        ],
    )
