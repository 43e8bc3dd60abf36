"""Many rows into one table in one go, the fastest way each engine has: PostgreSQL COPY, SQLite executemany.

A transaction of 133 resources writes ~1,000 rows (resources, versions, index rows). psycopg's executemany sends
one INSERT per row (~0.1 ms each on the server), and multi-row VALUES statements cost psycopg a regex pass over
the whole statement text on every execution (texts this long are not cached): COPY ... FROM STDIN in the write's
own transaction costs neither (bench/ingest.py). On SQLite, sqlite3's own executemany (one C loop per statement).
A failed COPY is raised as SQLAlchemy's exception for it (IntegrityError, OperationalError), as a statement run
through SQLAlchemy would be, so store.db.write retries a lost unique-key race and maps an outage to a 503.

Inside pipelined(conn) (PostgreSQL, psycopg pipeline mode), insert_tuples sends one `INSERT ... SELECT FROM
unnest(arrays)` per table instead of a COPY, and returns without waiting for it: COPY cannot be pipelined, and
its wait left the server idle while Python built the next table's rows (store.writes._flush builds the index rows
while the resources and versions are inserted, and the statements share one wait): ~20 us less per resource of a
133-resource Synthea-shaped transaction, ~60-90 us per resource of a seed case's (bench/ingest.py, bundle by bundle
alternately). Errors of the pipelined statements are raised when the block ends, as SQLAlchemy's exceptions as above.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from operator import itemgetter

from sqlalchemy import BigInteger, Boolean, Connection, Insert, Integer, String, Table, insert, text
from sqlalchemy.exc import DBAPIError

_INSERTS: dict[str, Insert] = {}
_PIPELINE = "store.row_writer.pipeline"           # conn.info key: the psycopg cursor of an open pipelined() block
_UNNEST: dict[tuple[str, tuple[str, ...]], str | None] = {}  # per table and columns: the pipelined INSERT's text


@contextlib.contextmanager
def pipelined(conn: Connection) -> Iterator[None]:
    """PostgreSQL: insert_tuples and send() in this block do not wait for the server; the block's end waits for
    all of them and raises the first error (as SQLAlchemy's exception: IntegrityError, OperationalError, ...).
    The block must not run SQLAlchemy statements (send them before or after). Elsewhere (SQLite, a libpq without
    pipeline mode, a block already open) a plain block: every statement runs and raises at once."""
    if conn.dialect.name != "postgresql" or _PIPELINE in conn.info:
        yield
        return
    import psycopg

    raw = conn.connection.driver_connection
    assert raw is not None
    if not psycopg.Pipeline.is_supported():
        yield
        return
    try:
        # The cursor outlives the pipeline: the pipeline's end processes the results of the cursor's statements.
        with raw.cursor() as cursor, raw.pipeline():
            conn.info[_PIPELINE] = cursor
            try:
                yield
            finally:
                conn.info.pop(_PIPELINE, None)
    except psycopg.Error as exc:
        raise DBAPIError.instance("pipelined INSERT", None, exc, psycopg.Error) from exc


def send(conn: Connection, sql: str, params: list) -> bool:
    """Inside pipelined(conn) on PostgreSQL: send one statement (psycopg placeholders), prepared once per
    connection, and return True without waiting for it; False elsewhere (the caller runs its own statement)."""
    cursor = conn.info.get(_PIPELINE)
    if cursor is None:
        return False
    cursor.execute(sql, params, prepare=True)
    return True


def insert_rows(conn: Connection, table: Table, rows: list[dict]) -> None:
    """INSERT rows (dicts with the same keys) into table, in the caller's transaction."""
    if not rows:
        return
    columns = tuple(c.name for c in table.c if c.name in rows[0])
    if len(columns) == 1:   # itemgetter of one key gives the value, not a 1-tuple
        insert_tuples(conn, table, columns, [(row[columns[0]],) for row in rows])
        return
    insert_tuples(conn, table, columns, list(map(itemgetter(*columns), rows)))  # in C: no generator per row


def insert_tuples(conn: Connection, table: Table, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """INSERT rows given as tuples of `columns`' values, in the caller's transaction (no dict per row)."""
    if not rows:
        return
    if conn.dialect.name == "sqlite":
        _sqlite_insert(conn, table, columns, rows)
        return
    if conn.dialect.name != "postgresql":
        stmt = _INSERTS.get(table.name)
        if stmt is None:
            stmt = _INSERTS[table.name] = insert(table)
        conn.execute(stmt, [dict(zip(columns, row)) for row in rows])
        return
    if _PIPELINE in conn.info:
        unnest = _unnest_sql(table, columns)
        if unnest is not None:
            # Binary arrays (%b): the text array format escapes every quote of a JSON body in Python, ~5x slower.
            send(conn, unnest, [list(values) for values in zip(*rows)])
            return
    sql = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
    raw = conn.connection.driver_connection
    assert raw is not None
    import psycopg

    try:
        with raw.cursor() as cursor, cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)
    except psycopg.Error as exc:
        raise DBAPIError.instance(sql, None, exc, psycopg.Error) from exc


def _unnest_sql(table: Table, columns: tuple[str, ...]) -> str | None:
    """`INSERT INTO t (columns) SELECT * FROM unnest(%b::type[], ...)`, None if a column's type has no array
    cast here (then COPY). Strings are cast to text[], not varchar(n)[]: an explicit cast to varchar(n) cuts a long
    value silently, the INSERT's own assignment cast refuses it (22001) as COPY does."""
    key = (table.name, columns)
    if key not in _UNNEST:
        casts = []
        for name in columns:
            kind = table.c[name].type
            # BigInteger before Integer (a subclass); String covers Text.
            cast = next((c for t, c in ((BigInteger, "bigint"), (Integer, "integer"), (Boolean, "boolean"),
                                        (String, "text")) if isinstance(kind, t)), None)
            casts.append(cast)
        _UNNEST[key] = None if None in casts else (
            f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest("
            + ", ".join(f"%b::{c}[]" for c in casts) + ")")
    return _UNNEST[key]


def next_pks(conn: Connection, table: Table, count: int) -> list[int]:
    """PostgreSQL: `count` values of the table's `pk` sequence, for rows written by insert_rows with their pk.
    The sequence is named in the statement, found once per connection: pg_get_serial_sequence in the select list
    ran for every value, and one array instead of `count` result rows; 0.35 ms instead of 1 ms for 133 values
    (bench/ingest.py)."""
    key = f"store.serial:{table.name}"
    sequence = conn.info.get(key)
    if sequence is None:
        sequence = conn.execute(text(f"SELECT pg_get_serial_sequence('{table.name}', 'pk')")).scalar_one()
        conn.info[key] = sequence
    quoted = sequence.replace("'", "''")
    sql = text(f"SELECT array_agg(nextval('{quoted}')) FROM generate_series(1, :n)")
    return list(conn.execute(sql, {"n": count}).scalar_one())


def _sqlite_insert(conn: Connection, table: Table, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """sqlite3's executemany with tuples: SQLAlchemy's executemany spent more on each row's parameters
    (construct_params) than SQLite on inserting it."""
    import sqlite3

    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    raw = conn.connection.driver_connection
    assert raw is not None
    try:
        raw.executemany(sql, rows)
    except sqlite3.Error as exc:
        raise DBAPIError.instance(sql, None, exc, sqlite3.Error) from exc
