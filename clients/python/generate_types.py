"""Generate ``ovpp_client/types.py`` from ``clients/schema.graphql`` and ``clients/operations``.

Each client type below names the schema type it is read from and, for each of its fields, the
wire path (``wallet.address``; ``edges[].node`` maps over a list). Python types come from the
schema (nullability, lists, enums as ``Literal`` aliases, nested client types); the spec only
says where a ``String`` holds an amount (``Decimal``) or a base-unit integer (``int``). Every
wire path must be selected by some operation in ``clients/operations``, so a type never reads a
field the client does not ask for. Behaviour beyond reading the wire (``Viewer.balance``,
``Transaction.is_final``) lives in ``ovpp_client/behaviour.py``.

Run ``python clients/python/generate_types.py`` after changing the schema, the operations or
the spec; ``tests/api/test_clients.py`` fails while the committed file differs.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    GraphQLEnumType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLUnionType,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    build_schema,
    get_named_type,
    parse,
)

CLIENTS = Path(__file__).resolve().parents[1]
SCHEMA = CLIENTS / "schema.graphql"
OPERATIONS = CLIENTS / "operations"
TARGET = CLIENTS / "python" / "ovpp_client" / "types.py"

SCALARS = {
    "ID": "str",
    "String": "str",
    "Int": "int",
    "Boolean": "bool",
    "DateTime": "datetime",
    "JSON": "dict[str, Any]",
}


@dataclass(frozen=True)
class Field:
    name: str  # the Python attribute
    path: str  # the wire path from the type's wire dict
    convert: str | None = None  # "decimal" or "int" for a String that holds one
    of: str | None = None  # the client class of an object field, when not named like its type
    comment: str | None = None


@dataclass(frozen=True)
class ClientType:
    name: str
    schema_type: str
    fields: list[Field]
    doc: str | None = None
    behaviour: str | None = None  # a mixin of ovpp_client.behaviour
    to_wire: str | None = None  # an input type this value is also sent as


def client_type(
    name: str,
    fields: str,
    *,
    schema_type: str | None = None,
    comments: dict[str, str] | None = None,
    **options: str,
) -> ClientType:
    """``fields``: ``name[=wire.path][:decimal|:int][@ClientClass]``, space-separated; the wire
    path defaults to the camelCase name."""
    parsed = []
    for item in fields.split():
        item, _, of = item.partition("@")
        item, _, convert = item.partition(":")
        attribute, _, path = item.partition("=")
        parsed.append(
            Field(
                name=attribute,
                path=path or _camel(attribute),
                convert=convert or None,
                of=of or None,
                comment=(comments or {}).get(attribute),
            )
        )
    return ClientType(name, schema_type or name, parsed, **options)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


TRANSACTION = (
    "id status hash token amount:decimal to fee_token fee_amount:decimal sponsored "
    "created_at confirmed_at error"
)
ONRAMP_PAYMENT = (
    "id purpose status token token_amount:decimal fiat_amount:decimal fee:decimal "
    "currency payment_intent_id client_secret "
    "delivery_transaction@DeliveryTransaction refunded_amount:decimal "
    "refund_failed_amount:decimal disputed clawback_required error enrollment_id "
    "created_at paid_at delivered_at"
)
PROGRAM = (
    "id name utility description fee_amount:decimal fee_payer sponsored protocols "
    "eligible_device_types enrollment_bonus=incentives.enrollmentBonus:decimal "
    "per_event_reward=incentives.perEventReward:decimal active"
)
ENROLLMENT = (
    "id status protocol payment_method fee:decimal connection_id connection_parameters "
    "error created_at payment_client_secret device program@ProgramSummary"
)

TYPES = [
    client_type(
        "Token",
        "symbol name decimals address",
        comments={"address": "None for the chain's native (gas) token"},
    ),
    client_type(
        "Balance",
        "token amount:decimal raw:int pending:decimal",
        comments={"pending": "in flight, not in amount yet: signed"},
    ),
    client_type(
        "HeldBalance",
        "token amount:decimal until",
        comments={"until": "before then it cannot go to an address outside this service"},
    ),
    client_type(
        "CardLimits",
        "currency per_day:decimal per_day_left:decimal per_30_days:decimal "
        "per_30_days_left:decimal",
    ),
    client_type(
        "Viewer",
        "id email address=wallet.address as_of_block=wallet.asOfBlock stale=wallet.stale "
        "balances=wallet.balances held=wallet.held card_limits=wallet.cardLimits",
        behaviour="ViewerBehaviour",
    ),
    client_type("Chain", "chain_id name"),
    client_type(
        "FeeQuote",
        "id fee_token fee_amount:decimal sponsored sponsor_name expires_at",
        comments={"fee_amount": "0 when sponsored"},
    ),
    client_type("Transaction", TRANSACTION, behaviour="TransactionBehaviour"),
    client_type(
        "TransactionPage",
        "transactions=edges[].node has_next_page=pageInfo.hasNextPage "
        "end_cursor=pageInfo.endCursor",
        schema_type="TransactionConnection",
        comments={"end_cursor": "pass as ``after`` for the next page"},
    ),
    client_type("ActivityToken", "symbol address decimals", schema_type="Token"),
    client_type("ActivityTransaction", "id", schema_type="Transaction"),
    client_type(
        "ActivityItem",
        "id kind token@ActivityToken amount:decimal raw:int counterparty counterparty_label "
        "status transaction@ActivityTransaction block_number tx_hash timestamp",
        comments={"transaction": "the wallet's relayed transaction behind it, if any"},
    ),
    client_type(
        "ActivityPage",
        "items=activity.edges[].node has_next_page=activity.pageInfo.hasNextPage "
        "end_cursor=activity.pageInfo.endCursor as_of_block stale",
        schema_type="Wallet",
        comments={"end_cursor": "pass as ``after`` for the next page"},
    ),
    # Expected refusals: the typed members of the mutations' result unions.
    client_type(
        "InsufficientFunds",
        "message token_symbol=token.symbol required:decimal available:decimal",
    ),
    client_type("PolicyViolation", "message rule"),
    client_type("QuoteExpired", "message"),
    client_type("SponsorRefused", "message reason sponsor_name"),
    client_type("InvalidInput", "message field"),
    client_type("OnrampUnavailable", "message"),
    client_type("CapabilityCheck", "name passed reason"),
    client_type("NotEligible", "message failing_checks"),
    client_type(
        "SiteAddress",
        "line1 city region postal_code country",
        comments={"region": 'subdivision code, e.g. "CA"', "country": "ISO 3166-1 alpha-2"},
        to_wire="SiteAddressInput",
    ),
    client_type(
        "Capabilities",
        "max_charge_kw:decimal max_discharge_kw:decimal energy_kwh:decimal nominal_voltage",
    ),
    client_type("DeviceModel", "make model device_type protocols capabilities"),
    client_type("Device", "id make model serial device_type site_address"),
    client_type("Program", PROGRAM),
    client_type(
        "ProgramSummary",
        "id name utility fee_amount:decimal fee_payer sponsored protocols",
        schema_type="Program",
        doc="A program as an enrollment names it.",
    ),
    client_type(
        "EnrollmentCheck",
        "ready fee:decimal fee_payer gas_sponsored gas_fee:decimal checks failing_checks",
    ),
    client_type("Enrollment", ENROLLMENT),
    client_type("DevicesAndEnrollments", "devices enrollments", schema_type="Viewer"),
    client_type(
        "OnrampQuote",
        "id token token_amount:decimal fiat_amount:decimal fee:decimal currency price:decimal "
        "expires_at",
        comments={"fiat_amount": "fee included"},
    ),
    client_type("DeliveryTransaction", "id status hash", schema_type="Transaction"),
    client_type(
        "OnrampPayment",
        ONRAMP_PAYMENT,
        comments={
            "client_secret": "only in createOnrampPayment's answer",
            "refund_failed_amount": "refunded, then the card refused it: never reached the card",
        },
    ),
]

# The result unions' successful members; every other member is a refusal.
SUCCESSES = {"Transaction", "Enrollment", "Device", "OnrampQuote", "OnrampPayment"}


# Which fields the operations select, per schema type


def selected_fields(schema: GraphQLSchema) -> set[tuple[str, str]]:
    """Every (schema type, field) some operation in ``clients/operations`` selects."""
    documents = [parse(path.read_text(encoding="utf-8")) for path in OPERATIONS.glob("*.graphql")]
    fragments = {
        node.name.value: node
        for document in documents
        for node in document.definitions
        if isinstance(node, FragmentDefinitionNode)
    }
    selected: set[tuple[str, str]] = set()

    def walk(selection_set: SelectionSetNode | None, parent: GraphQLObjectType | None) -> None:
        if selection_set is None or parent is None:
            return
        for node in selection_set.selections:
            if isinstance(node, FieldNode):
                if node.name.value == "__typename":
                    continue
                child = get_named_type(parent.fields[node.name.value].type)
                selected.add((parent.name, node.name.value))
                for target in _objects(child):
                    walk(node.selection_set, target)
            else:
                named = (
                    fragments[node.name.value] if not isinstance(node, InlineFragmentNode) else node
                )
                condition = named.type_condition
                target = schema.type_map[condition.name.value] if condition else parent
                walk(
                    named.selection_set, target if isinstance(target, GraphQLObjectType) else parent
                )

    roots = {"query": schema.query_type, "mutation": schema.mutation_type}
    roots["subscription"] = schema.subscription_type
    for document in documents:
        for node in document.definitions:
            if isinstance(node, OperationDefinitionNode):
                walk(node.selection_set, roots[node.operation.value])
    return selected


def _objects(named: object) -> list[GraphQLObjectType]:
    if isinstance(named, GraphQLObjectType):
        return [named]
    if isinstance(named, GraphQLUnionType):
        return list(named.types)
    return []


# Code generation


class Generator:
    def __init__(self, schema: GraphQLSchema) -> None:
        self.schema = schema
        self.selected = selected_fields(schema)
        self.by_name = {client.name: client for client in TYPES}
        self.enums: dict[str, GraphQLEnumType] = {}

    def resolve(self, client: ClientType, spec: Field) -> tuple[object, list[str]]:
        """The schema type at the end of the field's wire path, checking every hop is selected."""
        current: object = self.schema.type_map[client.schema_type]
        hops = spec.path.replace("[]", "").split(".")
        for hop in hops:
            owner = get_named_type(current)
            assert isinstance(owner, GraphQLObjectType), (client.name, spec.path)
            assert hop in owner.fields, f"{client.name}.{spec.name}: no {owner.name}.{hop}"
            assert (owner.name, hop) in self.selected, (
                f"{client.name}.{spec.name}: no operation selects {owner.name}.{hop}"
            )
            current = owner.fields[hop].type
        return current, hops

    def annotation(self, client: ClientType, spec: Field) -> str:
        wire_type, _ = self.resolve(client, spec)
        return self._annotation(wire_type, spec, list_path="[]" in spec.path)

    def _annotation(self, wire_type: object, spec: Field, *, list_path: bool) -> str:
        nullable = not isinstance(wire_type, GraphQLNonNull)
        inner = wire_type.of_type if isinstance(wire_type, GraphQLNonNull) else wire_type
        if isinstance(inner, GraphQLList):
            text = f"list[{self._annotation(inner.of_type, spec, list_path=False)}]"
        else:
            text = self._named(inner, spec)
        if list_path:
            text = f"list[{text}]"
        return f"{text} | None" if nullable and not list_path else text

    def _named(self, named: object, spec: Field) -> str:
        if spec.convert == "decimal":
            return "Decimal"
        if spec.convert == "int":
            return "int"
        if isinstance(named, GraphQLEnumType):
            self.enums[named.name] = named
            return named.name
        if isinstance(named, GraphQLObjectType):
            name = spec.of or named.name
            assert self.by_name[name].schema_type == named.name, (spec.name, name)
            return name
        return SCALARS[named.name]  # type: ignore[attr-defined]

    def reader(self, client: ClientType, spec: Field) -> str:
        """The expression that reads the field from ``wire``."""
        wire_type, hops = self.resolve(client, spec)
        if "[]" in spec.path:
            before, after = spec.path.split("[].")
            source = "wire" + "".join(f'["{hop}"]' for hop in before.split("."))
            item = "item" + "".join(f'["{hop}"]' for hop in after.split("."))
            return f"[{self._convert(wire_type, spec, item)} for item in {source}]"
        access = "wire" + "".join(f'["{hop}"]' for hop in hops)
        return self._convert(wire_type, spec, access)

    def _convert(self, wire_type: object, spec: Field, access: str) -> str:
        nullable = not isinstance(wire_type, GraphQLNonNull)
        inner = wire_type.of_type if isinstance(wire_type, GraphQLNonNull) else wire_type
        if isinstance(inner, GraphQLList):
            named = get_named_type(inner)
            if isinstance(named, GraphQLObjectType):
                return f"[{spec.of or named.name}.from_wire(item) for item in {access}]"
            return f"list({access})"
        if spec.convert == "decimal":
            assert not nullable, spec.name
            return f"Decimal({access})"
        if spec.convert == "int":
            assert not nullable, spec.name
            return f"int({access})"
        if isinstance(inner, GraphQLObjectType):
            reader = f"{spec.of or inner.name}.from_wire"
            return f"_maybe({reader}, {access})" if nullable else f"{reader}({access})"
        if getattr(inner, "name", None) == "DateTime":
            return f"_datetime({access})" if nullable else f"datetime.fromisoformat({access})"
        return access

    def client_type(self, client: ClientType) -> list[str]:
        base = f"({client.behaviour})" if client.behaviour else ""
        lines = ["", "", "@dataclass(frozen=True, slots=True)", f"class {client.name}{base}:"]
        if client.doc:
            lines += [f'    """{client.doc}"""', ""]
        for spec in client.fields:
            comment = f"  # {spec.comment}" if spec.comment else ""
            lines.append(f"    {spec.name}: {self.annotation(client, spec)}{comment}")
        if client.to_wire:
            lines += ["", "    def to_wire(self) -> Wire:", "        return {"]
            input_type = self.schema.type_map[client.to_wire]
            for spec in client.fields:
                assert spec.path in input_type.fields, (client.to_wire, spec.path)  # type: ignore[attr-defined]
                lines.append(f'            "{spec.path}": self.{spec.name},')
            lines.append("        }")
        lines += [
            "",
            "    @classmethod",
            f"    def from_wire(cls, wire: Wire) -> {client.name}:",
            "        return cls(",
        ]
        for spec in client.fields:
            lines.append(f"            {spec.name}={self.reader(client, spec)},")
        lines.append("        )")
        return lines

    def refusals(self) -> list[str]:
        unions = [
            named
            for named in self.schema.type_map.values()
            if isinstance(named, GraphQLUnionType)
            and all(t.name in self.by_name for t in named.types)
        ]
        members = [t.name for union in unions for t in union.types if t.name not in SUCCESSES]
        refusals = [client.name for client in TYPES if client.name in set(members)]
        lines = ["", "", *_union("Refusal", refusals)]
        lines += ["", "_REFUSALS: dict[str, type[Refusal]] = {"]
        lines += [f'    "{name}": {name},' for name in refusals]
        lines += ["}"]
        lines += [
            "",
            "",
            "def refusal_from_wire(wire: Wire) -> Refusal:",
            '    """The typed refusal named by ``__typename``."""',
            '    kind = wire["__typename"]',
            "    if kind not in _REFUSALS:",
            '        raise ValueError(f"unknown result type {kind!r}")',
            "    return _REFUSALS[kind].from_wire(wire)",
        ]
        lines += ["", "", "# The mutations' result unions."]
        for union in sorted(unions, key=lambda union: union.name):
            lines += _union(union.name, [member.name for member in union.types])
        return lines

    def module(self) -> str:
        body: list[str] = []
        for client in TYPES:
            body += self.client_type(client)
        refusals = self.refusals()
        enums: list[str] = ["", "", "# The schema's enums."]
        for name in sorted(self.enums):
            enums += _literal(name, [f'"{value}"' for value in self.enums[name].values])
        behaviours = sorted({client.behaviour for client in TYPES if client.behaviour})
        header = [
            '"""The results of the operations in ``clients/operations``, as typed, immutable',
            "values. Generated by ``clients/python/generate_types.py`` from",
            "``clients/schema.graphql`` and the operations: do not edit.",
            "",
            "Amounts arrive as decimal strings and become ``Decimal`` (never a float); base-unit",
            "integers become ``int``; timestamps become aware ``datetime``. Each type is built",
            'from the wire dict its operation selects, by ``from_wire``."""',
            "",
            "from __future__ import annotations",
            "",
            "from collections.abc import Callable",
            "from dataclasses import dataclass",
            "from datetime import datetime",
            "from decimal import Decimal",
            "from typing import Any, Literal, TypeVar",
            "",
            f"from ovpp_client.behaviour import {', '.join(behaviours)}",
            "",
            "Wire = dict[str, Any]",
            'T = TypeVar("T")',
            "",
            "",
            "def _datetime(value: str | None) -> datetime | None:",
            "    return datetime.fromisoformat(value) if value else None",
            "",
            "",
            "def _maybe(read: Callable[[Wire], T], value: Wire | None) -> T | None:",
            "    return read(value) if value else None",
        ]
        return "\n".join(header + enums + body + refusals) + "\n"


# Lines laid out as ruff format lays them out (line length 100), so the file is stable under it.
LINE = 100


def _literal(name: str, values: list[str]) -> list[str]:
    one_line = f"{name} = Literal[{', '.join(values)}]"
    if len(one_line) <= LINE:
        return [one_line]
    if len(inner := f"    {', '.join(values)}") <= LINE:
        return [f"{name} = Literal[", inner, "]"]
    return [f"{name} = Literal[", *(f"    {value}," for value in values), "]"]


def _union(name: str, members: list[str]) -> list[str]:
    one_line = f"{name} = {' | '.join(members)}"
    if len(one_line) <= LINE:
        return [one_line]
    if len(inner := f"    {' | '.join(members)}") <= LINE:
        return [f"{name} = (", inner, ")"]
    return [f"{name} = (", f"    {members[0]}", *(f"    | {m}" for m in members[1:]), ")"]


def generate() -> str:
    return Generator(build_schema(SCHEMA.read_text(encoding="utf-8"))).module()


if __name__ == "__main__":
    TARGET.write_text(generate(), encoding="utf-8")
    print(f"wrote {TARGET}", file=sys.stderr)
