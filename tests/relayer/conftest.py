"""The sponsored-jobs tests' ``stage``: a test's own stack (``own_stack``) and what makes
customers and holds blocks on the session chain."""

from __future__ import annotations

import pytest

from chain.address_book import AddressBook
from chain.deploy import Deployer
from tests.support.issuer import TestIssuer
from tests.support.own_stack import (
    OwnStack,
)
from tests.support.sponsored_jobs import Stage


@pytest.fixture(name="stage")
def stage_fixture(
    deployer: Deployer,
    own_stack: OwnStack,
    test_issuer: TestIssuer,
    contracts: AddressBook,
) -> Stage:
    return Stage(stack=own_stack, issuer=test_issuer, deployer=deployer, contracts=contracts)
