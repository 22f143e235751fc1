"""The database schema: table definitions, SCHEMA_VERSION and the migrations to it.

``MIGRATIONS[i]`` brings a database from version ``i`` to ``i + 1``; each runs in one
transaction together with its ``schema_version`` record (``Store._migrate``).
"""

import re

SCHEMA_VERSION = 7

# PRAGMA application_id of a lagmon database: the bytes "LAGM" (header offset 68), set when
# lagmon creates the file, and at the first write of a lagmon database made before it had one
# (application_id 0 and exactly lagmon's tables, TABLES_AT). `file(1)` prints it.
APPLICATION_ID = 0x4C41474D

SCHEMA_VERSION_TABLE = "CREATE TABLE schema_version(version INTEGER NOT NULL)"
PARTITION_OFFSETS_TABLE = """CREATE TABLE partition_offsets(
    topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
    first_seen REAL NOT NULL, last_seen REAL NOT NULL,
    PRIMARY KEY(topic, partition, offset)) WITHOUT ROWID"""
PARTITION_ANCHORS_TABLE = """CREATE TABLE partition_anchors(
    topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
    timestamp REAL NOT NULL, exact INTEGER NOT NULL,
    PRIMARY KEY(topic, partition, offset)) WITHOUT ROWID"""
CONSUMER_COMMITS_TABLE = """CREATE TABLE consumer_commits(
    group_id TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, first_seen REAL NOT NULL,
    committed_offset INTEGER NOT NULL, last_seen REAL NOT NULL,
    PRIMARY KEY(group_id, topic, partition, first_seen)) WITHOUT ROWID"""
# The newest consumer_commits row of every key, kept by record_commits: what the lag is computed
# from, read without grouping the whole history (migration 2).
LATEST_COMMITS_TABLE = """CREATE TABLE latest_commits(
    group_id TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
    committed_offset INTEGER NOT NULL, first_seen REAL NOT NULL, last_seen REAL NOT NULL,
    PRIMARY KEY(group_id, topic, partition)) WITHOUT ROWID"""
LATEST_COMMITS_FILL = """INSERT INTO latest_commits(group_id, topic, partition, committed_offset, first_seen, last_seen)
    SELECT group_id, topic, partition, committed_offset, max(first_seen), last_seen
    FROM consumer_commits GROUP BY group_id, topic, partition"""
GROUP_STATUS_TABLE = """CREATE TABLE group_status(
    group_id TEXT NOT NULL, topic TEXT NOT NULL, state TEXT NOT NULL, since REAL, reason TEXT,
    static_samples INTEGER, last_sampled REAL, next_sample REAL, last_present REAL, lag_seconds REAL,
    PRIMARY KEY(group_id, topic))"""
# Migration 4: the commit history in time order. A sample's new rows all share first_seen, so
# they go to the end of the table (and next to each other in the (group_id, topic) index), not
# to one random page per group-partition, which keeps the WAL a sample writes small.
# Same columns, same order.
CONSUMER_COMMITS_V4 = [
    """CREATE TABLE consumer_commits_v4(
    group_id TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, first_seen REAL NOT NULL,
    committed_offset INTEGER NOT NULL, last_seen REAL NOT NULL,
    PRIMARY KEY(first_seen, group_id, topic, partition)) WITHOUT ROWID""",
    """INSERT INTO consumer_commits_v4(group_id, topic, partition, first_seen, committed_offset, last_seen)
    SELECT group_id, topic, partition, first_seen, committed_offset, last_seen FROM consumer_commits""",
    "DROP TABLE consumer_commits",
    "ALTER TABLE consumer_commits_v4 RENAME TO consumer_commits",
    "CREATE INDEX consumer_commits_pair ON consumer_commits(group_id, topic)",
]
# Migration 3: the sampler's timelag.LagSummary of each group/topic, as a JSON array.
GROUP_STATUS_SUMMARY = "ALTER TABLE group_status ADD COLUMN lag_summary TEXT"
GROUP_TRANSITIONS_TABLE = """CREATE TABLE group_transitions(
    group_id TEXT NOT NULL, topic TEXT NOT NULL, at REAL NOT NULL,
    from_state TEXT, to_state TEXT, reason TEXT)"""
GROUP_TRANSITIONS_INDEX = "CREATE INDEX group_transitions_key ON group_transitions(group_id, topic, at)"
EXCLUDED_TOPICS_TABLE = "CREATE TABLE excluded_topics(topic TEXT PRIMARY KEY, pattern TEXT, first_seen REAL)"
EXCLUDED_GROUPS_TABLE = (
    "CREATE TABLE excluded_groups(group_id TEXT PRIMARY KEY, pattern TEXT, first_seen REAL)"
)
STAGE_STATE_TABLE = """CREATE TABLE stage_state(
    stage TEXT PRIMARY KEY, pid INTEGER, started_at REAL, heartbeat_at REAL,
    last_success REAL, last_error TEXT, last_error_at REAL, interval REAL)"""
# Migration 5: the sampler's per group/topic figures beyond the time lag (lagmon.figures), and
# a stage's own figures (the sampler's last sample duration and error count) as key/value rows.
GROUP_FIGURES_TABLE = """CREATE TABLE group_figures(
    group_id TEXT NOT NULL, topic TEXT NOT NULL, sampled_at REAL NOT NULL,
    offset_lag INTEGER NOT NULL, messages_lost INTEGER NOT NULL, catch_up_at REAL,
    trend TEXT NOT NULL, partitions TEXT NOT NULL,
    PRIMARY KEY(group_id, topic)) WITHOUT ROWID"""
STAGE_FIGURES_TABLE = """CREATE TABLE stage_figures(
    stage TEXT NOT NULL, name TEXT NOT NULL, value REAL, PRIMARY KEY(stage, name)) WITHOUT ROWID"""

# What the sampler's listing has seen missing once (a group, a topic) or how many answers in a
# row a pair had no commit: kept here so a restart between two listings changes nothing.
LISTING_STATE_TABLE = """CREATE TABLE listing_state(
    kind TEXT NOT NULL, name TEXT NOT NULL, topic TEXT NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY(kind, name, topic)) WITHOUT ROWID"""

# Migration 7: a counter every write to the rows the sampler mirrors in memory (store.cache)
# moves, other than the sample's own writes: thinning, pruning, purging, dropping.
HISTORY_EPOCH_TABLE = "CREATE TABLE history_epoch(epoch INTEGER NOT NULL)"
HISTORY_EPOCH_FILL = "INSERT INTO history_epoch(epoch) VALUES (0)"

# MIGRATIONS[i] brings the schema from version i to version i + 1.
MIGRATIONS: list[tuple[str, ...]] = [
    (
        SCHEMA_VERSION_TABLE,
        PARTITION_OFFSETS_TABLE,
        PARTITION_ANCHORS_TABLE,
        CONSUMER_COMMITS_TABLE,
        GROUP_STATUS_TABLE,
        GROUP_TRANSITIONS_TABLE,
        GROUP_TRANSITIONS_INDEX,
        EXCLUDED_TOPICS_TABLE,
        EXCLUDED_GROUPS_TABLE,
        STAGE_STATE_TABLE,
    ),
    (LATEST_COMMITS_TABLE, LATEST_COMMITS_FILL),
    (GROUP_STATUS_SUMMARY,),
    tuple(CONSUMER_COMMITS_V4),
    (GROUP_FIGURES_TABLE, STAGE_FIGURES_TABLE),
    (LISTING_STATE_TABLE,),
    (HISTORY_EPOCH_TABLE, HISTORY_EPOCH_FILL),
]
assert len(MIGRATIONS) == SCHEMA_VERSION

# Per-connection scratch tables (temp schema: writing them never locks the shared file).
TEMP_TABLES = (
    """CREATE TEMP TABLE IF NOT EXISTS in_heads(topic TEXT, partition INTEGER, offset INTEGER,
        PRIMARY KEY(topic, partition)) WITHOUT ROWID""",
    """CREATE TEMP TABLE IF NOT EXISTS in_commits(group_id TEXT, topic TEXT, partition INTEGER,
        committed_offset INTEGER, prev_offset INTEGER, prev_first_seen REAL, prev_last_seen REAL,
        PRIMARY KEY(group_id, topic, partition)) WITHOUT ROWID""",
    """CREATE TEMP TABLE IF NOT EXISTS want_pairs(group_id TEXT, topic TEXT,
        PRIMARY KEY(group_id, topic)) WITHOUT ROWID""",
)


def tables_at(version: int) -> frozenset[str]:
    """The tables (sqlite_* excluded) of a lagmon database at schema ``version``, from the
    migrations' CREATE, DROP and RENAME statements: how a lagmon database made before
    APPLICATION_ID is told from another application's."""
    tables: set[str] = set()
    for stmts in MIGRATIONS[:version]:
        for stmt in stmts:
            if m := re.match(r"\s*CREATE TABLE (\w+)", stmt):
                tables.add(m.group(1))
            elif m := re.match(r"\s*DROP TABLE (\w+)", stmt):
                tables.discard(m.group(1))
            elif m := re.match(r"\s*ALTER TABLE (\w+) RENAME TO (\w+)", stmt):
                tables.discard(m.group(1))
                tables.add(m.group(2))
    return frozenset(tables)
