"""Loading the demo data into the app's PostgreSQL tables with COPY.

COPY because a million likes through INSERTs would dominate ``make demo``; one transaction so a
failed load leaves nothing half-written; and a refusal to touch tables that already hold rows
(unless asked to replace them), because the same command may point at the app's real database.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from twotower_pipeline.demo_data.frames import DEMO_TABLES, TABLE_COLUMNS, DemoData
from twotower_pipeline.demo_data.size import DemoDataError

_COPY_CHUNK_ROWS = 100_000


def load_demo_data(conn: psycopg.Connection, data: DemoData, *, replace: bool = False) -> dict[str, int]:
    """COPY the frames into the seven app tables in one transaction; return rows per table.

    Tables that already hold rows are refused unless ``replace``, which empties exactly
    these seven tables (profiles included) first. Nothing else is written. With a
    transaction already open on ``conn`` this runs in a savepoint and the caller commits.
    """
    with conn.transaction():
        existing = _existing_rows(conn)
        if existing and not replace:
            found = ", ".join(f"{table} has {rows} row{'s' * (rows != 1)}" for table, rows in existing.items())
            raise DemoDataError(
                f"the demo tables are not empty ({found}); pass --reset to replace the rows of "
                f"{', '.join(DEMO_TABLES)}"
            )
        if replace:
            _empty_demo_tables(conn)
        counts = {}
        for table, columns in TABLE_COLUMNS.items():
            counts[table] = _copy_frame(conn, table, columns, getattr(data, table))
        for table in DEMO_TABLES:
            conn.execute(sql.SQL("analyze public.{}").format(sql.Identifier(table)))
    return counts


def _existing_rows(conn: psycopg.Connection) -> dict[str, int]:
    missing = [
        t for t in DEMO_TABLES if conn.execute("select to_regclass(%s)", (f"public.{t}",)).fetchone()[0] is None
    ]
    if missing:
        raise DemoDataError(f"table(s) {', '.join(missing)} do not exist; apply the migrations first")
    existing = {}
    for table in DEMO_TABLES:
        table_sql = sql.Identifier(table)
        if conn.execute(sql.SQL("select exists (select 1 from public.{})").format(table_sql)).fetchone()[0]:
            existing[table] = conn.execute(sql.SQL("select count(*) from public.{}").format(table_sql)).fetchone()[0]
    return existing


def _empty_demo_tables(conn: psycopg.Connection) -> None:
    """TRUNCATE the seven tables; DELETE where a table outside them keeps a foreign key to one.

    PostgreSQL refuses to TRUNCATE a table referenced from another table (video_embeddings
    references videos) unless that table is truncated too. Those referencing tables must be
    empty (else their rows would go with the demo rows) and are locked against writes
    until the load commits; the referenced demo tables are then emptied with DELETE.
    """
    outside = conn.execute(
        """
        select c.conrelid::regclass::text, c.confrelid::regclass::text
        from pg_constraint c
        where c.contype = 'f'
          and c.confrelid = any(%(ours)s::regclass[])
          and c.conrelid <> all(%(ours)s::regclass[])
        """,
        {"ours": [f"public.{t}" for t in DEMO_TABLES]},
    ).fetchall()
    referenced = set()
    for referencing, target in outside:
        conn.execute(sql.SQL("lock table {} in share mode").format(sql.SQL(referencing)))
        rows = conn.execute(sql.SQL("select count(*) from {}").format(sql.SQL(referencing))).fetchone()[0]
        if rows:
            raise DemoDataError(
                f"table {referencing} has {rows} rows that reference {target}; replacing the demo "
                f"data would delete them, so empty {referencing} first"
            )
        referenced.add(target.removeprefix("public."))
    truncatable = [t for t in DEMO_TABLES if t not in referenced]
    conn.execute(
        sql.SQL("truncate table {}").format(
            sql.SQL(", ").join(sql.Identifier("public", t) for t in truncatable)
        )
    )
    for table in DEMO_TABLES:
        if table in referenced:
            conn.execute(sql.SQL("delete from {}").format(sql.Identifier("public", table)))


def _copy_frame(conn: psycopg.Connection, table: str, columns: tuple[str, ...], frame: pd.DataFrame) -> int:
    """COPY a frame as CSV, in chunks so a million likes never become one huge string."""
    statement = sql.SQL("copy {} ({}) from stdin (format csv)").format(
        sql.Identifier("public", table), sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    )
    # Timestamps as ISO text up front: pandas' per-value date formatting is the slow part.
    frame = frame.assign(
        **{
            column: np.char.add(
                np.datetime_as_string(frame[column].dt.tz_convert(None).to_numpy().astype("datetime64[us]")), "Z"
            )
            for column in columns
            if isinstance(frame[column].dtype, pd.DatetimeTZDtype)
        }
    )
    with conn.cursor() as cursor, cursor.copy(statement) as copy:
        for start in range(0, len(frame), _COPY_CHUNK_ROWS):
            buffer = io.StringIO()
            chunk = frame.iloc[start : start + _COPY_CHUNK_ROWS]
            chunk.to_csv(buffer, columns=list(columns), header=False, index=False)
            copy.write(buffer.getvalue().encode("utf-8"))
    return len(frame)
