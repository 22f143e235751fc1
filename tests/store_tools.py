"""Helpers of the lagmon.store tests: read a database file behind the Store's back."""

import sqlite3


def raw(path, sql, params=()):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def head_rows(path, topic="t", partition=0):
    return raw(
        path,
        "SELECT offset, first_seen, last_seen FROM partition_offsets"
        " WHERE topic = ? AND partition = ? ORDER BY offset",
        (topic, partition),
    )


def newest_first_keep(rows, max_entries):
    return set(range(len(rows) - max_entries, len(rows)))
