"""The tables of the store of record (SQLAlchemy Core). Alembic migrations in store/migrations/ create them.

Every row that belongs to a patient carries `patient_id`, the compartment and shard key: a distributed
PostgreSQL (Citus, or hash partitioning) can place a patient's resources, versions and index rows together
and answer every compartment query on one node (docs/store.md).

Times are epoch milliseconds (UTC) in BIGINT columns, so that both engines compare them the same way;
the FHIR text of an instant is kept in the resource body.
"""
from __future__ import annotations

from sqlalchemy import (BigInteger, Boolean, Column, ForeignKey, Index, Integer, MetaData, String, Table, Text,
                        UniqueConstraint, text)

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

# RES_PK: version and index rows name their resource by `res_pk` without a FOREIGN KEY (dropped by migration 0004).
# Only store/writes.py writes them, in the transaction that writes or locks that resource row, and resource rows
# are never deleted (a FHIR delete keeps the row, deleted = true), so the constraint could never fail; on
# PostgreSQL its check cost ~30 us per resource ingested (a key-share lock on the parent row for every version and
# index row, bench/ingest.py), and Citus restricts foreign keys between distributed tables.

# Immutable history: one row per version, a delete included (body None).
resource_versions = Table(
    "resource_versions", metadata,
    Column("seq", PK, primary_key=True, autoincrement=True),  # global order of writes: history paging
    Column("res_pk", PK, nullable=False),                     # resources.pk; no foreign key, see RES_PK above
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


def _index_table(name: str, *columns: Column, indexes: tuple[tuple[str, ...], ...], sparse: tuple[str, ...] = ()) -> Table:
    """A search-index table: rows of one parameter kind, rewritten in the transaction of each version. An index
    ending in a `sparse` column holds only the rows that have a value there (see where_not_null)."""
    return Table(
        name, metadata,
        Column("res_pk", PK, nullable=False),  # resources.pk; no foreign key (see RES_PK above)
        Column("res_type", TYPE, nullable=False),
        Column("param", PARAM, nullable=False),
        Column("patient_id", ID),
        *columns,
        Index(f"ix_{name}_res", "res_pk"),
        *(Index(f"ix_{name}_{'_'.join(cols)}", *cols, **(where_not_null(cols[-1]) if cols[-1] in sparse else {}))
          for cols in indexes),
    )


def where_not_null(column: str) -> dict:
    """Index options making a partial index of the rows with `column` set, on both engines. For a column most rows
    leave empty (the display text of a status token, the URL of a relative reference) the index then takes a
    row only where a search can find it by that column: every search of it compares the column (=, LIKE), which
    both planners read as NOT NULL; ~260 fewer index entries per Synthea-shaped transaction, ~10 us less per
    resource ingested on PostgreSQL (bench/ingest.py, migration 0005)."""
    return {"postgresql_where": text(f"{column} IS NOT NULL"), "sqlite_where": text(f"{column} IS NOT NULL")}


idx_token = _index_table(
    "idx_token",
    Column("system", VALUE, nullable=False),   # '' when the coding/identifier has no system
    Column("code", VALUE, nullable=False),
    Column("text", VALUE),                     # normalised display / CodeableConcept.text / Identifier.type.text (:text)
    indexes=(("res_type", "param", "code", "system"), ("res_type", "param", "text")), sparse=("text",),
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
    indexes=(("target_id", "target_type", "param", "res_type"), ("res_type", "param", "target_url")), sparse=("target_url",),
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

# Sync bookkeeping per upstream (workers/sync_state.py, workers/conflicts.py): not clinical data, but losing it
# means a full re-sync and, for conflicts, both copies of a resource, so it lives here rather than in Redis.
UPSTREAM = String(64)
REF = String(130)  # "Type/id"

sync_ids = Table(  # our id <-> the upstream's id, per resource type
    "sync_ids", metadata,
    Column("upstream", UPSTREAM, primary_key=True),
    Column("res_type", TYPE, primary_key=True),
    Column("local_id", ID, primary_key=True),
    Column("upstream_id", ID, nullable=False),
    Index("ix_sync_ids_upstream_id", "upstream", "res_type", "upstream_id"),
)
sync_baselines = Table(  # the upstream versionId last written or read, and a hash of our content then
    "sync_baselines", metadata,
    Column("upstream", UPSTREAM, primary_key=True),
    Column("ref", REF, primary_key=True),
    Column("upstream_version", String(64), nullable=False),
    Column("local_hash", String(64), nullable=False),
)
sync_watermarks = Table(  # only ever move forwards: "pull:all", "pull:<patient id>", "push"
    "sync_watermarks", metadata,
    Column("upstream", UPSTREAM, primary_key=True),
    Column("name", String(80), primary_key=True),
    Column("value", String(64), nullable=False),  # an instant (pull) or epoch ms (push), compared by kind
)
sync_conflicts = Table(  # one open record per resource and upstream; resolved ones are kept
    "sync_conflicts", metadata,
    Column("id", String(16), primary_key=True),
    Column("upstream", UPSTREAM, nullable=False),
    Column("resource", REF, nullable=False),
    Column("patient_id", ID),
    Column("status", String(32), nullable=False),
    Column("detected_at", BigInteger, nullable=False),
    Column("body", Text, nullable=False),  # JSON: both copies, the paths that differ, the job
    Index("ix_sync_conflicts_status", "status", "upstream", "detected_at"),
)

# API keys made with `python -m service.apikeys`: only the SHA-256 of each key, its client and scopes. Kept here,
# not in Redis, so that a Redis flush or outage neither locks clients out nor needs keys re-issued.
api_keys = Table(
    "api_keys", metadata,
    Column("digest", String(64), primary_key=True),
    Column("client", String(200), nullable=False),
    Column("scopes", Text, nullable=False),  # JSON list
    Column("created", BigInteger, nullable=False),
    Index("ix_api_keys_client", "client"),
)
