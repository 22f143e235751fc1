"""Helpers of the lagmon.store tests: read a database file behind the Store's back."""

from tests.helpers import raw


def head_rows(path, topic="t", partition=0):
    return raw(
        path,
        "SELECT offset, first_seen, last_seen FROM partition_offsets"
        " WHERE topic = ? AND partition = ? ORDER BY offset",
        (topic, partition),
    )


def newest_first_keep(rows, max_entries):
    return set(range(len(rows) - max_entries, len(rows)))
