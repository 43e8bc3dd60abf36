"""store.row_writer: the pipelined INSERTs (PostgreSQL) write what COPY writes and fail as it fails."""
from __future__ import annotations

import pytest
from sqlalchemy import create_engine, insert, select, text
from sqlalchemy.exc import DataError, IntegrityError

from store import db, row_writer
from store.schema import patient_state, resources

COLUMNS = ("pk", "res_type", "res_id", "version", "deleted", "last_updated", "patient_id", "body")
# What COPY's text format escapes, and what the text array format would: quotes, backslashes, tabs, newlines,
# non-ASCII, NULL values and an empty string.
BODIES = ['{"a":"q\\"uote","b":"back\\\\slash"}', "tab\there\nnewline\r", "é 漢字 \U0001f600", None, ""]


def _rows(first_pk: int, prefix: str) -> list[tuple]:
    return [(first_pk + k, "Observation", f"{prefix}-{k}", k + 1, k % 2 == 0, 2**40 + k, None if k == 3 else f"p{k}", body)
            for k, body in enumerate(BODIES)]


def _stored(conn, prefix: str) -> list[tuple]:
    query = select(*(resources.c[c] for c in COLUMNS)).where(resources.c.res_id.like(f"{prefix}-%")).order_by(resources.c.pk)
    return [tuple(r) for r in conn.execute(query)]


def test_pipelined_rows_are_the_rows_written_outside_a_pipeline(db_engine):
    with db_engine.begin() as conn:
        row_writer.insert_tuples(conn, resources, COLUMNS, _rows(1, "plain"))
        with row_writer.pipelined(conn):
            row_writer.insert_tuples(conn, resources, COLUMNS, _rows(101, "piped"))
    with db_engine.connect() as conn:
        plain, piped = _stored(conn, "plain"), _stored(conn, "piped")
    assert piped == [(pk + 100, t, rid.replace("plain", "piped"), *rest) for pk, t, rid, *rest in plain]
    assert [r[1:] for r in plain] == [r[1:] for r in _rows(1, "plain")]


# Bounded columns go to the server joined by \x1f, None written \x1e (row_writer._joined_params): values that
# hold or are those characters, an empty string alone in its column (which string_to_array would read as no element),
# booleans and integers beyond 32 bits must arrive as sent.
JOINED_EDGES = [(1, "Observation", "j-0", 1, True, 2**62, "", "{}"),
                (2, "Observation", "j-1", 2, False, -(2**62), None, "{}"),
                (3, "Observation", "j-2", 3, True, 0, "\x1e", "{}"),
                (4, "Observation", "j-3", 4, False, 5, "a\x1fb", "{}"),
                (5, "Observation", "j-4", 5, True, 6, "p\x1e", "{}")]


@pytest.mark.parametrize("rows", [JOINED_EDGES, *([row] for row in JOINED_EDGES)],
                         ids=["together", *(f"alone-{k}" for k in range(len(JOINED_EDGES)))])
def test_pipelined_columns_keep_empty_strings_separators_nulls_and_big_numbers(db_engine, rows):
    with db_engine.begin() as conn, row_writer.pipelined(conn):
        row_writer.insert_tuples(conn, resources, COLUMNS, rows)
    with db_engine.connect() as conn:
        assert _stored(conn, "j") == rows


def test_a_unique_key_violation_in_a_pipeline_is_sqlalchemys_integrity_error(db_engine):
    """store.db.write retries a lost create race on IntegrityError: the pipelined insert must raise it too."""
    with db_engine.begin() as conn:
        row_writer.insert_tuples(conn, resources, COLUMNS, _rows(1, "dup"))
    with pytest.raises(IntegrityError), db_engine.begin() as conn, row_writer.pipelined(conn):
        row_writer.insert_tuples(conn, resources, COLUMNS, _rows(201, "dup"))
        row_writer.insert_tuples(conn, resources, COLUMNS, _rows(301, "other"))
    with db_engine.connect() as conn:
        assert _stored(conn, "other") == []   # nothing of the failed transaction


def test_a_value_too_long_is_refused_not_cut(db_engine):
    """The arrays are cast to text[], not varchar(64)[]: an explicit cast to varchar(n) would cut the value."""
    if db_engine.dialect.name != "postgresql":
        pytest.skip("SQLite does not enforce varchar lengths")
    row = (1, "Observation", "x" * 65, 1, False, 1, None, "{}")
    with pytest.raises(DataError), db_engine.begin() as conn, row_writer.pipelined(conn):
        row_writer.insert_tuples(conn, resources, COLUMNS, [row])


def test_the_patient_state_bump_in_a_pipeline_counts_once_per_write(db_engine):
    from store.bundle_plan import plan_bundle
    from store.writes import apply_entries

    def write(family: str) -> None:
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"request": {"method": "PUT", "url": "Patient/p1"},
             "resource": {"resourceType": "Patient", "id": "p1", "name": [{"family": family}]}},
            {"fullUrl": "urn:uuid:8a6e0a4c-6b1d-4a47-9d7e-0c9b1f0f0a01", "request": {"method": "POST", "url": "Observation"},
             "resource": {"resourceType": "Observation", "status": "final", "subject": {"reference": "Patient/p1"},
                          "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}]}}}]}
        _, planned = plan_bundle(bundle, 100)
        apply_entries(db_engine, planned)

    write("One")
    write("Two")
    with db_engine.connect() as conn:
        assert conn.execute(select(patient_state.c.version).where(patient_state.c.patient_id == "p1")).scalar_one() == 2


def _kill_pooled_connection(engine) -> None:
    """A connection just used (and so not pinged at its next checkout, store.db._ping_when_idle) killed by the
    server, as a restart between two requests would: pg_terminate_backend from another session. The pool is
    emptied first, so that the killed connection is the only one pooled: the next checkout gets it."""
    engine.dispose()
    with engine.connect() as conn:
        backend = conn.connection.driver_connection.info.backend_pid
    admin = create_engine(engine.url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": backend}).scalar_one()
    finally:
        admin.dispose()


@pytest.mark.parametrize("through", ["statement", "copy", "pipeline"])
def test_a_write_on_a_pooled_connection_killed_since_its_last_use_runs_again_on_a_fresh_one(db_engine, through):
    """No COMMIT was sent on the dead connection, so nothing was applied: store.db.write runs the write once more,
    whether SQLAlchemy saw the connection die (a statement) or the driver did (COPY, the pipeline)."""
    if db_engine.dialect.name != "postgresql":
        pytest.skip("an embedded SQLite connection has no server to lose")
    _kill_pooled_connection(db_engine)

    def work(conn) -> None:
        rows = _rows(1, "again")
        if through == "statement":
            conn.execute(insert(resources), [dict(zip(COLUMNS, row)) for row in rows])
        elif through == "copy":
            row_writer.insert_tuples(conn, resources, COLUMNS, rows)  # outside a pipeline: COPY
        else:
            with row_writer.pipelined(conn):
                row_writer.insert_tuples(conn, resources, COLUMNS, rows)

    db.write(db_engine, work)
    with db_engine.connect() as conn:
        assert [r[2] for r in _stored(conn, "again")] == [f"again-{k}" for k in range(len(BODIES))]
