"""The schema without foreign keys to resources (migration 0004) and the index rows it relies on the write path for:
on both engines, the migration from 0003 keeps the rows and drops only those constraints, and after creates,
replacements and deletes every version and index row names a resource row, and a resource's index rows are
exactly those of its current version (none once deleted)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, inspect, insert, select, text

import databases
from store import db, indexing
from store.bundle_plan import plan_bundle
from store.schema import INDEX_TABLES, resource_versions, resources
from store.writes import LENIENT, apply_entries

CHILDREN = ("resource_versions", *(t.name for t in INDEX_TABLES.values()))


def _alembic(engine: Engine, action, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(Path(db.__file__).parent / "migrations"))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        action(config, revision)


def _resource_fks(engine: Engine) -> dict[str, int]:
    found = inspect(engine)
    return {table: sum(fk["referred_table"] == "resources" for fk in found.get_foreign_keys(table)) for table in CHILDREN}


@pytest.mark.parametrize("kind", databases.ENGINES)
def test_migration_0004_drops_only_the_foreign_keys_to_resources(kind, tmp_path):
    url = databases.database_url(kind, tmp_path)
    engine = db.engine_for(url, migrate=False)
    try:
        _alembic(engine, command.upgrade, "0003")
        assert set(_resource_fks(engine).values()) == {1}
        indexes = {table: sorted(i["name"] for i in inspect(engine).get_indexes(table)) for table in CHILDREN}
        with engine.begin() as conn:
            pk = conn.execute(insert(resources).values(res_type="Patient", res_id="p1", version=1, deleted=False,
                                                       last_updated=1, patient_id="p1", body="{}")
                              .returning(resources.c.pk)).scalar_one()
            conn.execute(insert(resource_versions).values(res_pk=pk, res_type="Patient", res_id="p1", version=1,
                                                          method="POST", last_updated=1, patient_id="p1", body="{}"))
            indexing.insert_index(conn, indexing.collect_rows(pk, {"resourceType": "Patient", "gender": "male"}, "p1"))
        _alembic(engine, command.upgrade, "head")
        assert set(_resource_fks(engine).values()) == {0}
        found = inspect(engine)
        assert {table: sorted(i["name"] for i in found.get_indexes(table)) for table in CHILDREN} == indexes
        assert len(found.get_foreign_keys("audit_event_patients")) == 1   # not a child of resources: kept
        with engine.connect() as conn:
            assert conn.execute(select(resource_versions.c.res_pk)).scalars().all() == [pk]
            assert conn.execute(text("SELECT res_pk, param, code FROM idx_token")).all() == [(pk, "gender", "male")]
        _alembic(engine, command.downgrade, "0003")
        assert set(_resource_fks(engine).values()) == {1}
    finally:
        engine.dispose()
        if kind == "postgresql":
            databases.drop_postgres_database(url)


def _transaction(*entries: dict) -> list:
    _, planned = plan_bundle({"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}, 100)
    return planned


def _put(resource: dict) -> dict:
    return {"resource": resource, "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}}


def _observation(oid: str, code: str, subject: str = "Patient/p1") -> dict:
    return {"resourceType": "Observation", "id": oid, "status": "final", "subject": {"reference": subject},
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]}, "effectiveDateTime": "2020-01-02"}


def test_index_rows_follow_the_current_version_through_replace_and_delete(db_engine):
    patient = {"resourceType": "Patient", "id": "p1", "gender": "female", "name": [{"family": "Ngata"}]}
    apply_entries(db_engine, _transaction(_put(patient), _put(_observation("o1", "2345-7")),
                                          _put(_observation("o2", "9811-1")), _put(_observation("o3", "2823-3"))),
                  policy=LENIENT)
    apply_entries(db_engine, _transaction(_put(_observation("o1", "14749-6", "Patient/p1")),   # replaced
                                          {"request": {"method": "DELETE", "url": "Observation/o2"}}),
                  policy=LENIENT)
    apply_entries(db_engine, _transaction({"request": {"method": "DELETE", "url": "Observation/o3"}}), policy=LENIENT)
    apply_entries(db_engine, _transaction(_put(_observation("o3", "2160-0"))), policy=LENIENT)  # back after delete
    with db_engine.connect() as conn:
        rows = {r.pk: r for r in conn.execute(select(resources))}
        for table in (resource_versions, *INDEX_TABLES.values()):
            assert set(conn.execute(select(table.c.res_pk).distinct()).scalars()) <= set(rows), table.name
        for pk, row in rows.items():
            stored = {kind: sorted(map(tuple, conn.execute(select(*(table.c[c] for c in indexing._COLUMNS[kind]))
                                                            .where(table.c.res_pk == pk)).all()))
                      for kind, table in INDEX_TABLES.items()}
            wanted = {kind: [] for kind in INDEX_TABLES}
            if not row.deleted:
                for kind, values in indexing.collect_rows(pk, json.loads(row.body), row.patient_id).items():
                    wanted[kind] = sorted(values)
            assert stored == wanted, (row.res_type, row.res_id)
        deleted = {r.res_id for r in rows.values() if r.deleted}
        assert deleted == {"o2"}
        codes = conn.execute(text("SELECT r.res_id, t.code FROM idx_token t JOIN resources r ON r.pk = t.res_pk "
                                  "WHERE t.param = 'code' ORDER BY r.res_id")).all()
        assert [tuple(c) for c in codes] == [("o1", "14749-6"), ("o3", "2160-0")]
        versions = conn.execute(select(resource_versions.c.res_id, resource_versions.c.version, resource_versions.c.method)
                                .order_by(resource_versions.c.seq)).all()
        assert [tuple(v) for v in versions if v.res_id == "o3"] == [("o3", 1, "PUT"), ("o3", 2, "DELETE"), ("o3", 3, "PUT")]
