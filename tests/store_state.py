"""What the store of record holds, as comparable data: for tests that something was, or was not, written."""
from __future__ import annotations

from sqlalchemy import Engine, func, select

from store.schema import patient_state, resource_versions, resources


def snapshot(engine: Engine) -> dict:
    """Every resource row (type, id, version, deleted), the number of versions, and each compartment's version."""
    with engine.connect() as conn:
        rows = {(r.res_type, r.res_id): (r.version, r.deleted) for r in conn.execute(
            select(resources.c.res_type, resources.c.res_id, resources.c.version, resources.c.deleted))}
        versions = conn.execute(select(func.count()).select_from(resource_versions)).scalar_one()
        patients = dict(conn.execute(select(patient_state.c.patient_id, patient_state.c.version)).all())
    return {"resources": rows, "versions": versions, "patients": patients}
