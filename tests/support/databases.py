"""The PostgreSQL server the tests make their databases on (``OVPP_TEST_POSTGRES``)."""

from __future__ import annotations

import os

POSTGRES_ADMIN_URL = os.environ.get(
    "OVPP_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
DATABASE_PREFIX = "ovpp_test"
