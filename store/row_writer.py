"""Many rows into one table in one go, the fastest way each engine has: PostgreSQL COPY, SQLite executemany.

A transaction of 133 resources writes ~1,000 rows (resources, versions, index rows). psycopg's executemany sends
one INSERT per row (~0.1 ms each on the server), and multi-row VALUES statements cost psycopg a regex pass over
the whole statement text on every execution (texts this long are not cached): COPY ... FROM STDIN in the write's
own transaction costs neither (bench/ingest.py). On SQLite, sqlite3's own executemany (one C loop per statement).
A failed COPY is raised as SQLAlchemy's exception for it (IntegrityError, OperationalError), as a statement run
through SQLAlchemy would be, so store.db.write retries a lost unique-key race and maps an outage to a 503.
"""
from __future__ import annotations

from sqlalchemy import Connection, Insert, Table, insert, text
from sqlalchemy.exc import DBAPIError

_INSERTS: dict[str, Insert] = {}


def insert_rows(conn: Connection, table: Table, rows: list[dict]) -> None:
    """INSERT rows (dicts with the same keys) into table, in the caller's transaction."""
    if not rows:
        return
    columns = tuple(c.name for c in table.c if c.name in rows[0])
    insert_tuples(conn, table, columns, [tuple(row[c] for c in columns) for row in rows])


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


def next_pks(conn: Connection, table: Table, count: int) -> list[int]:
    """PostgreSQL: `count` values of the table's `pk` sequence, for rows written by insert_rows with their pk."""
    sql = text(f"SELECT nextval(pg_get_serial_sequence('{table.name}', 'pk')) FROM generate_series(1, :n)")
    return [pk for (pk,) in conn.execute(sql, {"n": count})]


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
