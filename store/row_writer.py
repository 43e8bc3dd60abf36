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
alternately). Its arrays are mostly one joined text per column, split by the server (_unnest_plan). Errors of the
pipelined statements are raised when the block ends, as SQLAlchemy's exceptions as above.
"""
from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from operator import itemgetter

from sqlalchemy import BigInteger, Boolean, Connection, Engine, Insert, Integer, String, Table, insert, text
from sqlalchemy.exc import DBAPIError

_INSERTS: dict[str, Insert] = {}
_PIPELINE = "store.row_writer.pipeline"           # conn.info key: the psycopg cursor of an open pipelined() block
_UNNEST: dict[tuple[str, tuple[str, ...]], tuple[str, str, tuple[bool, ...]] | None] = {}  # per table and columns: _unnest_plan


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
        plan = _unnest_plan(table, columns)
        if plan is not None:
            joined_sql, arrays_sql, joined = plan
            params = _joined_params(rows, joined)
            if params is not None:
                send(conn, joined_sql, params)
            else:
                send(conn, arrays_sql, [list(values) for values in zip(*rows)])
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


def _unnest_plan(table: Table, columns: tuple[str, ...]) -> tuple[str, str, tuple[bool, ...]] | None:
    """The pipelined INSERT of these columns: `INSERT INTO t (columns) SELECT * FROM unnest(arrays)`, in two
    spellings, and which columns the first takes joined (_joined_params); None if a column's type has no array
    cast here (then COPY). The first takes each column of numbers, booleans and bounded strings (ids, codes,
    names) as one text the server splits (string_to_array): psycopg dumps an array element by element in Python,
    ~0.2 us each, ~5,000 such elements in a Synthea-shaped transaction (bench/ingest.py); a column of unbounded
    text (a resource's JSON) stays a binary array, which the server reads faster than it splits one long text.
    The second takes every column as a binary array (%b: the text array format escapes every quote of a JSON
    body in Python, ~5x slower): for rows holding a separator. Strings are cast to text[], not varchar(n)[]: an
    explicit cast to varchar(n) cuts a long value silently, the INSERT's own assignment cast refuses it (22001)
    as COPY does."""
    key = (table.name, columns)
    if key not in _UNNEST:
        casts, joined = [], []
        for name in columns:
            kind = table.c[name].type
            # BigInteger before Integer (a subclass); String covers Text.
            cast = next((c for t, c in ((BigInteger, "bigint"), (Integer, "integer"), (Boolean, "boolean"),
                                        (String, "text")) if isinstance(kind, t)), None)
            casts.append(cast)
            joined.append(not (isinstance(kind, String) and kind.length is None))
        if None in casts:
            _UNNEST[key] = None
        else:
            head = f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest("
            split = ", ".join(f"string_to_array(%b, E'\\x1f', E'\\x1e')::{c}[]" if j else f"%b::{c}[]"
                              for c, j in zip(casts, joined))
            _UNNEST[key] = (head + split + ")", head + ", ".join(f"%b::{c}[]" for c in casts) + ")", tuple(joined))
    return _UNNEST[key]


_SEP, _NULL = "\x1f", "\x1e"   # ASCII unit and record separators: a joined column's separator and its null


def _joined_params(rows: list[tuple], joined: tuple[bool, ...]) -> list | None:
    """The parameters of _unnest_plan's first INSERT: a joined column as one text (values joined by _SEP, None
    written _NULL, numbers and booleans as Python spells them, which PostgreSQL reads), any other as a list.
    None when a joined value holds a separator or is not a str, int or bool, or a column is one empty string: then
    every column goes as an array."""
    params: list = []
    for values, join in zip(zip(*rows), joined):
        if not join:
            params.append(list(values))
            continue
        texts = []
        nulls = 0
        for value in values:
            kind = type(value)
            if kind is str:
                texts.append(value)
            elif value is None:
                texts.append(_NULL)
                nulls += 1
            elif kind is int or kind is bool:
                texts.append(str(value))
            else:
                return None
        text = _SEP.join(texts)
        if not text or text.count(_SEP) != len(texts) - 1 or text.count(_NULL) != nulls:
            return None  # "" splits into no element at all, not into one empty string
        params.append(text)
    return params


# Per engine (one per database URL and process, store.db.engine_for) and table: pks this process drew from the
# table's sequence and has not used yet.
_spare_pks: dict[tuple[Engine, str], list[int]] = {}
_spare_lock = threading.Lock()
PK_BLOCK = 1024


def next_pks(conn: Connection, table: Table, count: int) -> list[int]:
    """PostgreSQL: `count` values of the table's `pk` sequence, for rows written by insert_rows with their pk.
    Drawn PK_BLOCK at a time and handed out by this process: the statement that drew them was a round trip before
    every write's pipeline, BEGIN's own included (~7 us per resource of a Synthea-shaped transaction,
    bench/ingest.py); now it is one in ~8 such writes. A value is used once (a rolled-back write's pks are gaps,
    as with any sequence); pks of concurrent writers interleave in blocks, not one by one, which no order relies
    on (keyset paging needs unique, immutable pks, not ones in commit order, which a sequence never gave)."""
    key = (conn.engine, table.name)
    with _spare_lock:
        spare = _spare_pks.setdefault(key, [])
        if len(spare) < count:
            spare.extend(_draw_pks(conn, table, max(count - len(spare), PK_BLOCK)))
        taken = spare[:count]
        del spare[:count]
    return taken


def _draw_pks(conn: Connection, table: Table, count: int) -> list[int]:
    """`count` new values of the table's pk sequence. The sequence is named in the statement, found once per
    connection: pg_get_serial_sequence in the select list ran for every value."""
    key = f"store.serial:{table.name}"
    sequence = conn.info.get(key)
    if sequence is None:
        sequence = conn.execute(text(f"SELECT pg_get_serial_sequence('{table.name}', 'pk')")).scalar_one()
        conn.info[key] = sequence
    quoted = sequence.replace("'", "''")
    sql = text(f"SELECT array_agg(nextval('{quoted}')) FROM generate_series(1, :n)")
    return list(conn.execute(sql, {"n": count}).scalar_one())


def _forget_spare_pks() -> None:
    """A forked child must not hand out the values its parent holds: both would insert them."""
    global _spare_lock
    _spare_pks.clear()
    _spare_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_spare_pks)


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
