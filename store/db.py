"""The database of record: engine from GATEWAY_DATABASE_URL (SQLite file by default), migrations, transactions.

SQLite is the embedded default, as HAPI defaults to H2: WAL journal, full fsync, a busy timeout, and write
transactions that take the write lock at BEGIN (BEGIN IMMEDIATE), so two writers queue instead of failing on
lock upgrade. PostgreSQL is the production engine: conditional writes serialise on transaction-scoped advisory
locks, rows on SELECT ... FOR UPDATE, and a unique-key race between two creates of one id retries the whole
transaction (which then sees the other's row).
"""
from __future__ import annotations

import contextlib
import enum
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Connection, Engine, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError
from sqlalchemy.pool import QueuePool

T = TypeVar("T")
DEFAULT_DATA_DIR = ".gateway-data"
RETRIES = 8
_engines: dict[str, Engine] = {}
_sqlite_writers: dict[int, threading.RLock] = {}  # per SQLite engine: this process's writers take turns


class DatabaseUnavailable(Exception):
    """The database did not answer; nothing was acknowledged (the gateway answers 503 with Retry-After)."""


def default_url(environ: Mapping[str, str] | None = None) -> str:
    """GATEWAY_DATABASE_URL, else a SQLite file in the data folder (GATEWAY_DATA_DIR, default ./.gateway-data)."""
    env = os.environ if environ is None else environ
    if env.get("GATEWAY_DATABASE_URL"):
        return env["GATEWAY_DATABASE_URL"]
    folder = Path(env.get("GATEWAY_DATA_DIR") or DEFAULT_DATA_DIR).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'gateway.sqlite3'}"


def engine_for(url: str, migrate: bool = True) -> Engine:
    """One engine per URL and process (engines pool connections); migrated to the newest schema on first use."""
    if url not in _engines:
        engine = _create(url)
        if migrate:
            upgrade(engine)
        _engines[url] = engine
    return _engines[url]


def _create(url: str) -> Engine:
    if url.startswith("sqlite"):
        # Pooled, not opened per transaction: closing the last connection to a WAL database checkpoints the WAL
        # and fsyncs, ~5 ms on every request (bench/gateway.py). A pooled connection serves one thread at a time.
        engine = create_engine(url, poolclass=QueuePool, pool_size=5, max_overflow=20,
                               connect_args={"timeout": 30, "check_same_thread": False})
        _sqlite_pragmas(engine)
        return engine
    engine = create_engine(url, pool_size=10, max_overflow=20,
                           connect_args={"connect_timeout": 5} if url.startswith("postgresql") else {})
    _ping_when_idle(engine)
    return engine


PING_IDLE_SECONDS = 1.0


def _ping_when_idle(engine: Engine) -> None:
    """A pooled connection idle for PING_IDLE_SECONDS is pinged before use, and replaced if dead (a database
    restarted meanwhile); one used since is not. SQLAlchemy's pool_pre_ping pinged at every checkout: BEGIN and
    SELECT 1, two round trips (~0.2 ms idle, ~0.5 ms under load) before every request's first statement
    (bench/ingest.py). A connection that died in that second fails its first statement instead: SQLAlchemy then
    replaces every pooled connection, the request answers 503 as for any outage (a write is retried at once by
    write(), nothing having been committed), and the next one connects afresh."""

    @event.listens_for(engine, "checkout")
    def ping_if_idle(dbapi_connection, record, _proxy) -> None:
        checked_in = record.info.get("checked_in")
        if checked_in is not None and time.monotonic() - checked_in < PING_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # noqa: BLE001 - any failure means the connection cannot be used
            raise DisconnectionError() from exc  # the pool discards it and checks out (or opens) another

    @event.listens_for(engine, "connect")
    def note_connect(_dbapi_connection, record) -> None:
        record.info["checked_in"] = time.monotonic()  # just opened: nothing to ping

    @event.listens_for(engine, "checkin")
    def note_checkin(_dbapi_connection, record) -> None:
        record.info["checked_in"] = time.monotonic()


def _forget_pooled_connections() -> None:
    """In a forked child: the parent's pooled connections are the parent's (an SQLite or PostgreSQL connection
    must not be used on both sides of a fork); the child opens its own. close=False leaves the parent's intact."""
    for engine in _engines.values():
        engine.dispose(close=False)
    _sqlite_writers.clear()  # a lock held by a parent's thread at the fork would never be released here


os.register_at_fork(after_in_child=_forget_pooled_connections)


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy's begin event below issues BEGIN itself
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=30000"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get("write"):
            # Set before BEGIN, per connection: a pooled connection keeps its level between transactions.
            level = "FULL" if options.get("durable", True) else "NORMAL"
            if conn.info.get("synchronous") != level:
                conn.exec_driver_sql(f"PRAGMA synchronous={level}")
                conn.info["synchronous"] = level
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get("write") else "BEGIN")


def is_sqlite(conn: Connection | Engine) -> bool:
    return conn.dialect.name == "sqlite"


def upgrade(engine: Engine) -> None:
    """Alembic upgrade to head (store/migrations), serialised across processes on PostgreSQL."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key("alembic-upgrade")})
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def upsert(conn: Connection, table: Table, rows: list[dict], keys: list[str],
           only_if: Callable[[Any], ColumnElement[bool]] | None = None,
           changes: Callable[[Any], dict] | None = None) -> None:
    """INSERT rows (one executemany), or on a key that exists UPDATE it, on both engines (ON CONFLICT DO UPDATE).
    By default the other columns take the new row's values; changes(excluded) gives other assignments (e.g. a
    counter + 1). only_if(excluded) is a condition over the table's and the new row's (`excluded`) columns:
    false keeps the old row."""
    if not rows:
        return
    conn.execute(upsert_statement(conn, table, keys, list(rows[0]), only_if, changes), rows)


def upsert_statement(conn: Connection, table: Table, keys: list[str], columns: list[str],
                     only_if: Callable[[Any], ColumnElement[bool]] | None = None,
                     changes: Callable[[Any], dict] | None = None) -> Any:
    """upsert()'s statement for rows with these columns, for a caller on a hot path to build once per dialect and
    run many times: building it (and its cache key) costs ~0.2 ms, about twice running it on PostgreSQL."""
    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = dialect_insert(table)
    assigned = changes(stmt.excluded) if changes else {c: stmt.excluded[c] for c in columns if c not in keys}
    where = only_if(stmt.excluded) if only_if else None
    return stmt.on_conflict_do_update(index_elements=keys, set_=assigned, where=where)


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def lock(conn: Connection, name: str) -> None:
    """Serialise writers on `name` until this transaction ends (SQLite's BEGIN IMMEDIATE already serialises all)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key(name)})


def lock_all(conn: Connection, names: list[str]) -> None:
    """lock() on every name in one round trip, in key order: two writers whose sets overlap cannot deadlock."""
    keys = sorted({_lock_key(n) for n in names})
    if keys and conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) WITH ORDINALITY AS u(k, n) "
                          "ORDER BY n"), {"keys": keys})


@contextlib.contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A read transaction (one snapshot on PostgreSQL's REPEATABLE READ, SQLite's deferred BEGIN)."""
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn
    except DBAPIError as exc:
        if _unavailable(exc):
            raise DatabaseUnavailable(str(exc.orig)) from None
        raise


class Outcome(enum.Enum):
    """How a write transaction ended, as its after-write hooks are told."""
    COMMITTED = "committed"
    ROLLED_BACK = "rolled back"
    UNKNOWN = "unknown"  # the COMMIT itself failed (e.g. the connection dropped): it may have been applied


_AFTER_WRITE = "store.after_write"


def after_write_hooks(conn: Connection) -> list[Callable[[Outcome], None]] | None:
    """Inside write(): the list of hooks to run with the outcome once this attempt's transaction has ended, after
    the connection (and SQLite's writer turn) is released and before write() returns; None outside write().
    Hooks must not raise. store.version_mirror ends its writer marks and sets its fences here."""
    return conn.info.get(_AFTER_WRITE)


def write(engine: Engine, work: Callable[[Connection], T], durable: bool = True) -> T:
    """Run work(conn) in one write transaction, retried whole on a lost race; work must only touch the database.

    durable=False commits without waiting for the disk flush (SQLite synchronous=NORMAL, PostgreSQL
    synchronous_commit off): a crash of this process loses nothing, a power loss (SQLite) or a crash of the
    database server (PostgreSQL) may lose the last such commits, never corrupts. Only for rows that are not
    clinical data (the audit events of reads)."""
    retried_stale = False
    for attempt in range(RETRIES):
        hooks: list[Callable[[Outcome], None]] = []
        outcome = Outcome.ROLLED_BACK
        died = False   # the connection was found dead
        try:
            with _writer_turn(engine), engine.connect() as conn:
                conn = conn.execution_options(write=True, durable=durable)
                conn.info[_AFTER_WRITE] = hooks  # on the pooled connection's record: removed below, whatever happens
                try:
                    with conn.begin():
                        if not durable and conn.dialect.name == "postgresql":
                            conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
                        result = work(conn)
                        outcome = Outcome.UNKNOWN  # from here until the commit returns
                    outcome = Outcome.COMMITTED
                except DBAPIError as exc:
                    died = _unavailable(exc)
                    if died and not conn.invalidated:
                        # Raised through the driver itself (store.row_writer's pipeline or COPY): SQLAlchemy did not
                        # see the connection die, and would pool it again.
                        conn.invalidate()
                    raise
                finally:
                    conn.info.pop(_AFTER_WRITE, None)
        except IntegrityError:
            if attempt == RETRIES - 1:
                raise
        except DBAPIError as exc:  # OperationalError, InterfaceError ("connection already closed"), ...
            if _unavailable(exc):
                if outcome is Outcome.ROLLED_BACK and (died or exc.connection_invalidated) and not retried_stale:
                    # A pooled connection that died unseen (see _ping_when_idle), before any COMMIT was sent: nothing
                    # was applied, and a fresh connection may succeed (the database restarted since its last use).
                    retried_stale = True
                    continue
                raise DatabaseUnavailable(str(exc.orig)) from None
            if not _retryable(exc) or attempt == RETRIES - 1:
                raise
        finally:
            for hook in hooks:
                hook(outcome)
        if outcome is Outcome.COMMITTED:
            return result
        time.sleep(min(0.5, 0.01 * 2 ** attempt))
    raise AssertionError("unreachable")


def _writer_turn(engine: Engine) -> contextlib.AbstractContextManager:
    """SQLite: this process's writer threads queue on a lock that wakes the next at once; left to SQLite's busy
    handler they poll the write lock with sleeps of 1 to 100 ms, the largest cost of a read's audit row under
    load (bench/gateway.py). Other processes still wait on the database lock itself."""
    if engine.dialect.name != "sqlite":
        return contextlib.nullcontext()
    return _sqlite_writers.setdefault(id(engine), threading.RLock())


def _retryable(exc: DBAPIError) -> bool:
    """Serialisation failures and deadlocks (PostgreSQL SQLSTATE 40001, 40P01) and SQLite's busy lock."""
    code = getattr(exc.orig, "sqlstate", None)
    return code in ("40001", "40P01") or "database is locked" in str(exc.orig)


def _unavailable(exc: DBAPIError) -> bool:
    """The database cannot be reached or went away mid-statement (not a statement's own error)."""
    if getattr(exc, "connection_invalidated", False):  # SQLAlchemy's dialect recognised a disconnect
        return True
    code = getattr(exc.orig, "sqlstate", None) or ""
    # PostgreSQL: class 08 connection exceptions; 57P01-57P03 admin/crash shutdown, cannot connect now.
    if code.startswith("08") or code in ("57P01", "57P02", "57P03"):
        return True
    message = str(exc.orig).lower()
    return any(s in message for s in ("connection refused", "could not connect", "server closed the connection",
                                       "terminating connection", "connection is closed", "unable to open database",
                                       "the database system is", "connection timeout", "consuming input failed",
                                       "the connection is lost", "connection already closed",
                                       "no connection to the server", "sending query", "ssl connection has been closed"))


def is_unavailable(exc: BaseException) -> bool:
    """For callers above the store: a database error that means an outage (answer 503), not a bug."""
    return isinstance(exc, DatabaseUnavailable) or (isinstance(exc, DBAPIError) and _unavailable(exc))
