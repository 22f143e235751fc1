"""The Store's queries of the figures tables (migration 5): group_figures (lagmon.figures,
written by the sampler, read by the reporter) and stage_figures (a stage's own numbers, e.g.
the sampler's last sample duration and error count)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import orjson

from lagmon.figures import GroupFigures
from lagmon.store.connection import Database

_COLUMNS = "group_id, topic, sampled_at, offset_lag, messages_lost, catch_up_at, trend, partitions"
_TREND_COLUMNS = _COLUMNS.replace("partitions", "'[]'")  # the partitions left out


def _figures(row: tuple) -> GroupFigures | None:
    g, t, at, offset_lag, lost, catch_up, trend, partitions = row
    try:
        return GroupFigures.from_lists(
            g, t, at, offset_lag, lost, catch_up, orjson.loads(trend), orjson.loads(partitions)
        )
    except (orjson.JSONDecodeError, TypeError, ValueError):
        return None  # unreadable: the next sample rewrites it


class FiguresStore(Database):
    def save_group_figures(self, rows: Iterable[GroupFigures]) -> None:
        values = [
            (
                f.group_id,
                f.topic,
                f.sampled_at,
                f.offset_lag,
                f.messages_lost,
                f.catch_up_at,
                orjson.dumps(f.trend_list()).decode(),
                orjson.dumps(f.partitions_list()).decode(),
            )
            for f in rows
        ]
        if not values:
            return
        with self._write() as db:
            db.executemany(
                f"INSERT OR REPLACE INTO group_figures({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", values
            )

    def group_figures(
        self, keys: Iterable[tuple[str, str]] | None = None
    ) -> dict[tuple[str, str], GroupFigures]:
        """The stored figures of every group/topic (of ``keys`` only, when given)."""
        return self._figures_of(_COLUMNS, keys)

    def group_trends(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], GroupFigures]:
        """The stored figures of ``keys`` with their trend points only (``partitions`` empty):
        what the sampler needs of the previous sample's figures, without decoding every
        partition's figure (group_figures gives those)."""
        return self._figures_of(_TREND_COLUMNS, keys)

    def _figures_of(
        self, columns: str, keys: Iterable[tuple[str, str]] | None
    ) -> dict[tuple[str, str], GroupFigures]:
        query = f"SELECT {columns} FROM group_figures"
        if keys is not None:  # only those rows decoded (the sampler asks for the sampled ones)
            query += " WHERE (group_id, topic) IN (SELECT group_id, topic FROM temp.want_pairs)"
            self._conn.execute("DELETE FROM temp.want_pairs")
            self._conn.executemany(
                "INSERT OR IGNORE INTO temp.want_pairs(group_id, topic) VALUES (?, ?)", list(keys)
            )
        with self._read() as db:
            rows = db.execute(query).fetchall()
        out = {}
        for row in rows:
            figures = _figures(row)
            if figures is not None:
                out[(row[0], row[1])] = figures
        return out

    def set_stage_figures(self, stage: str, values: Mapping[str, float | None]) -> None:
        with self._write() as db:
            db.executemany(
                "INSERT OR REPLACE INTO stage_figures(stage, name, value) VALUES (?, ?, ?)",
                [(stage, name, value) for name, value in values.items()],
            )

    def stage_figures(self) -> dict[str, dict[str, float | None]]:
        out: dict[str, dict[str, float | None]] = {}
        for stage, name, value in self._conn.execute("SELECT stage, name, value FROM stage_figures"):
            out.setdefault(stage, {})[name] = value
        return out
