"""Query text that is built rather than written out: the lag-input brackets and the
statements more than one Store method runs."""

_LATEST_COMMITS = """SELECT group_id, topic, partition, committed_offset, first_seen, last_seen
    FROM latest_commits {where}"""
_WANTED = "WHERE (group_id, topic) IN (SELECT group_id, topic FROM temp.want_pairs)"


def _seek(table: str, agg: str, cond: str = "") -> str:
    """Correlated min/max over the (topic, partition, offset) primary key: one index seek."""
    return (
        f"(SELECT {agg}(offset) FROM {table} WHERE topic = l.topic AND partition = l.partition"
        f"{' AND offset ' + cond if cond else ''})"
    )


def _join(alias: str, table: str, agg: str, cond: str = "") -> str:
    return (
        f"LEFT JOIN {table} {alias} ON {alias}.topic = l.topic AND {alias}.partition = l.partition"
        f" AND {alias}.offset = {_seek(table, agg, cond)}"
    )


# One row per latest commit; the columns are those of rows.lag_input().
LAG_INPUTS_SQL = f"""WITH l AS ({{latest}})
SELECT l.group_id, l.topic, l.partition, l.committed_offset, l.first_seen, l.last_seen,
       {_seek("partition_offsets", "max")},
       hb.offset, hb.last_seen, ha.offset, ha.first_seen,
       ab.offset, ab.timestamp, aa.offset, aa.timestamp, ho.offset, ho.first_seen, hb.first_seen
FROM l
{_join("hb", "partition_offsets", "max", "<= l.committed_offset")}
{_join("ha", "partition_offsets", "min", "> l.committed_offset")}
{_join("ab", "partition_anchors", "max", "<= l.committed_offset")}
{_join("aa", "partition_anchors", "min", ">= l.committed_offset")}
{_join("ho", "partition_offsets", "min")}"""
LAG_INPUTS_ALL = LAG_INPUTS_SQL.format(latest=_LATEST_COMMITS.format(where=""))
LAG_INPUTS_WANTED = LAG_INPUTS_SQL.format(latest=_LATEST_COMMITS.format(where=_WANTED))

PRUNE_ANCHORS = """WITH floor AS (
        SELECT topic, partition, min(committed_offset) AS c FROM latest_commits GROUP BY topic, partition)
DELETE FROM partition_anchors WHERE offset < coalesce(
    (SELECT c FROM floor f WHERE f.topic = partition_anchors.topic AND f.partition = partition_anchors.partition),
    9223372036854775807)"""

# Gives a commit run's history row its final last_seen (record_commits, thin_commits).
END_RUN = """UPDATE consumer_commits SET last_seen = ?
    WHERE first_seen = ? AND group_id = ? AND topic = ? AND partition = ?"""

# A new run of a commit offset in the history (record_commits).
NEW_RUN = """INSERT INTO consumer_commits(group_id, topic, partition, first_seen, committed_offset, last_seen)
    VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(first_seen, group_id, topic, partition)
    DO UPDATE SET committed_offset = excluded.committed_offset, last_seen = excluded.last_seen"""
PUT_LATEST_COMMIT = """INSERT INTO latest_commits(group_id, topic, partition, committed_offset, first_seen, last_seen)
    VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(group_id, topic, partition) DO UPDATE SET
    committed_offset = excluded.committed_offset, first_seen = excluded.first_seen, last_seen = excluded.last_seen"""


def multi_row(statement: str, rows: int) -> str:
    """`statement`, an INSERT with one row of ? placeholders after VALUES, taking `rows` rows:
    one statement of many rows costs less per row than executemany of one."""
    head, values, tail = statement.partition("VALUES (")
    one = "(" + tail[: tail.index(")") + 1]
    assert values and set(one) <= set("(?, )"), statement
    return f"{head}VALUES {', '.join([one] * rows)}{tail[len(one) - 1 :]}"


# history_epoch (migration 7): moved by every write to the rows a sampler mirrors in memory
# (store.cache) other than the sample's own, in that write's transaction.
EPOCH = "SELECT epoch FROM history_epoch"
BUMP_EPOCH = "UPDATE history_epoch SET epoch = epoch + 1"
# What the mirror is loaded from (one snapshot).
NEWEST_HEADS = """SELECT topic, partition, max(offset), first_seen, last_seen
    FROM partition_offsets GROUP BY topic, partition"""
OLDEST_HEADS = (
    "SELECT topic, partition, min(offset), first_seen FROM partition_offsets GROUP BY topic, partition"
)
ALL_ANCHORS = (
    "SELECT topic, partition, offset, timestamp FROM partition_anchors ORDER BY topic, partition, offset"
)
ALL_LATEST_COMMITS = (
    "SELECT group_id, topic, partition, committed_offset, first_seen, last_seen FROM latest_commits"
)
