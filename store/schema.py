"""The tables of the store of record (SQLAlchemy Core). Alembic migrations in store/migrations/ create them.

Every row that belongs to a patient carries `patient_id`, the compartment and shard key: a distributed
PostgreSQL (Citus, or hash partitioning) can place a patient's resources, versions and index rows together
and answer every compartment query on one node (docs/store.md).

Times are epoch milliseconds (UTC) in BIGINT columns, so that both engines compare them the same way;
the FHIR text of an instant is kept in the resource body.
"""
from __future__ import annotations

from sqlalchemy import (BigInteger, Boolean, Column, ForeignKey, Index, Integer, MetaData, String, Table, Text,
                        UniqueConstraint)

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
PK = BigInteger().with_variant(Integer(), "sqlite")
ID = String(64)      # FHIR id: [A-Za-z0-9\-\.]{1,64}
TYPE = String(64)
PARAM = String(64)
VALUE = String(255)  # index values longer than this are cut (docs/store.md); the body keeps the whole text

metadata = MetaData()

# The current version of every resource ever written (a deleted one keeps its row with deleted = true).
resources = Table(
    "resources", metadata,
    Column("pk", PK, primary_key=True, autoincrement=True),  # immutable: the keyset order of searches
    Column("res_type", TYPE, nullable=False),
    Column("res_id", ID, nullable=False),
    Column("version", Integer, nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("last_updated", BigInteger, nullable=False),
    Column("patient_id", ID),                                # compartment (None: in no patient compartment)
    Column("body", Text),                                    # JSON of the current version; None when deleted
    UniqueConstraint("res_type", "res_id", name="uq_resources_type_id"),
    Index("ix_resources_patient", "patient_id", "res_type"),
    Index("ix_resources_type_updated", "res_type", "last_updated"),
)

# Immutable history: one row per version, a delete included (body None).
resource_versions = Table(
    "resource_versions", metadata,
    Column("seq", PK, primary_key=True, autoincrement=True),  # global order of writes: history paging
    Column("res_pk", PK, ForeignKey("resources.pk"), nullable=False),
    Column("res_type", TYPE, nullable=False),
    Column("res_id", ID, nullable=False),
    Column("version", Integer, nullable=False),
    Column("method", String(8), nullable=False),              # POST | PUT | DELETE
    Column("last_updated", BigInteger, nullable=False),
    Column("patient_id", ID),
    Column("body", Text),
    UniqueConstraint("res_pk", "version", name="uq_versions_res_version"),
    Index("ix_versions_type_updated", "res_type", "last_updated"),
    Index("ix_versions_updated", "last_updated"),
)

# One row per patient compartment: its write counter (the cache key of patient views) and last change.
patient_state = Table(
    "patient_state", metadata,
    Column("patient_id", ID, primary_key=True),
    Column("version", BigInteger, nullable=False),
    Column("changed_at", BigInteger, nullable=False),
    Index("ix_patient_state_changed", "changed_at"),
)


def _index_table(name: str, *columns: Column, indexes: tuple[tuple[str, ...], ...]) -> Table:
    """A search-index table: rows of one parameter kind, rewritten in the transaction of each version."""
    return Table(
        name, metadata,
        Column("res_pk", PK, ForeignKey("resources.pk"), nullable=False),
        Column("res_type", TYPE, nullable=False),
        Column("param", PARAM, nullable=False),
        Column("patient_id", ID),
        *columns,
        Index(f"ix_{name}_res", "res_pk"),
        *(Index(f"ix_{name}_{'_'.join(cols)}", *cols) for cols in indexes),
    )


idx_token = _index_table(
    "idx_token",
    Column("system", VALUE, nullable=False),   # '' when the coding/identifier has no system
    Column("code", VALUE, nullable=False),
    Column("text", VALUE),                     # normalised display / CodeableConcept.text / Identifier.type.text (:text)
    indexes=(("res_type", "param", "code", "system"), ("res_type", "param", "text")),
)
idx_string = _index_table(
    "idx_string",
    Column("value_norm", VALUE, nullable=False),   # lower case, accents removed: default and :contains
    Column("value_exact", VALUE, nullable=False),  # as written: :exact
    indexes=(("res_type", "param", "value_norm"), ("res_type", "param", "value_exact")),
)
# On PostgreSQL the migration adds ix_idx_string_pattern (res_type, param, value_norm varchar_pattern_ops): prefix
# searches use a btree range only with that operator class.
idx_reference = _index_table(
    "idx_reference",
    Column("target_type", TYPE),               # None for a reference whose type cannot be read
    Column("target_id", VALUE),
    Column("target_url", VALUE),               # the reference as written when absolute or not Type/id
    indexes=(("target_id", "target_type", "param", "res_type"), ("res_type", "param", "target_url")),
)
idx_date = _index_table(
    "idx_date",
    Column("low", BigInteger, nullable=False),   # first ms the value covers (precision-aware)
    Column("high", BigInteger, nullable=False),  # last ms it covers
    indexes=(("res_type", "param", "low"), ("res_type", "param", "high")),
)
idx_uri = _index_table(
    "idx_uri",
    Column("value", VALUE, nullable=False),
    indexes=(("res_type", "param", "value"),),
)

INDEX_TABLES = {"token": idx_token, "string": idx_string, "reference": idx_reference, "date": idx_date, "uri": idx_uri}

# The audit trail: append-only, never updated or deleted by the service.
audit_events = Table(
    "audit_events", metadata,
    Column("seq", PK, primary_key=True, autoincrement=True),
    Column("recorded", BigInteger, nullable=False),
    Column("body", Text, nullable=False),
    Index("ix_audit_recorded", "recorded"),
)
audit_event_patients = Table(
    "audit_event_patients", metadata,
    Column("event_seq", PK, ForeignKey("audit_events.seq"), nullable=False),
    Column("patient_id", ID, nullable=False),
    Index("ix_audit_patient", "patient_id", "event_seq"),
)
