"""The lagmon database (the only package with SQL): schema, row types and the Store.

``schema`` holds the DDL and migrations, ``rows`` the row types, ``sql`` the built query
text, ``connection`` opening and transactions, ``db`` the Store with one method per query.
"""

from lagmon.store.connection import JOURNAL_SIZE_LIMIT, OPEN_WAIT_SECONDS
from lagmon.store.db import Keep, Store
from lagmon.store.rows import GroupStatus, HeadRow, LagInput, StageState, StoreError, Transition
from lagmon.store.schema import MIGRATIONS, SCHEMA_VERSION
from lagmon.store.sql import LAG_INPUTS_ALL, LAG_INPUTS_WANTED

__all__ = [
    "JOURNAL_SIZE_LIMIT",
    "LAG_INPUTS_ALL",
    "LAG_INPUTS_WANTED",
    "MIGRATIONS",
    "OPEN_WAIT_SECONDS",
    "SCHEMA_VERSION",
    "GroupStatus",
    "HeadRow",
    "Keep",
    "LagInput",
    "StageState",
    "Store",
    "StoreError",
    "Transition",
]
