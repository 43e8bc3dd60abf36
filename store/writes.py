"""Applies planned entries to the database: a transaction in one database transaction, in R4 processing order.

Conditional interactions (ifNoneExist, PUT/DELETE Type?query, conditional references) search inside the
write's transaction after taking an advisory lock on their criteria, so twenty concurrent conditional creates
of one identifier make one resource. Rows are locked FOR UPDATE before versions are decided; a unique-key race
between two creates of one id makes store.db.write() run the whole transaction again. Re-sending identical
content creates no new version, so replays are harmless.
"""
from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, cast

import orjson
from sqlalchemy import (
    Connection,
    Engine,
    Select,
    and_,
    bindparam,
    or_,
    select,
    update,
)

from mappings.errors import InputError, Issue
from mappings.fhir_vocabulary import content, instant, now_ms
from mappings.references import new_resource_id, parse_reference
from store import audit_log, conditional, db, indexing, row_writer
from store.bundle_plan import PROCESSING_ORDER, PlannedEntry
from store.references import Reference, iter_references, patient_of, replace_references, rewrite_references
from store.schema import patient_state, resource_versions, resources

_ID_NAMESPACE = uuid.UUID("6f1c1b7e-3f5e-5d0a-9d1e-6b2a4c8e0f11")
STRICT, LENIENT = "strict", "lenient"


@dataclass
class EntryOutcome:
    status: str
    location: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    resource: dict | None = None
    issues: list[Issue] = field(default_factory=list)
    patient: str | None = None
    patients: set[str] = field(default_factory=set)  # every compartment the entry changed (old and new)
    created: bool = False
    body: dict | None = None                          # a GET entry's answer (resource or searchset)


class TransactionFailed(Exception):
    """The transaction cannot be applied; nothing was written. status: 400, 404, 409, 410 or 412."""

    def __init__(self, issues: list[Issue], status: int):
        super().__init__(issues[0].message if issues else "transaction failed")
        self.issues, self.status = issues, status


def dumps(resource: dict) -> str:
    """The stored JSON text of a resource: compact, UTF-8 (non-ASCII not escaped). orjson writes the same text as
    json.dumps(ensure_ascii=False, separators=(",", ":")) 10x faster (bench/ingest.py); json.dumps remains for
    what orjson cannot write as json.dumps would: integers beyond 64 bits, lone surrogates (orjson raises) and
    NaN or infinities (orjson writes null): a text with null in it is written again by json.dumps (null is rare
    in a stored body: the planner refuses it outside arrays)."""
    try:
        text = orjson.dumps(resource)
    except TypeError:
        return json.dumps(resource, ensure_ascii=False, separators=(",", ":"))
    if b"null" in text:
        return json.dumps(resource, ensure_ascii=False, separators=(",", ":"))
    return text.decode()


def conditional_id(rtype: str, token: str) -> str:
    """The id a conditional update gives a new resource: derived from its criteria, so that the same upsert sent
    to two gateways, or replayed after a lost answer, names the same resource."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{rtype}|{token}"))


# Given the outcomes of a write about to commit, the AuditEvent that records it (None: none to record here).
WriteAudit = Callable[[list[EntryOutcome]], dict | None]


def apply_entries(engine: Engine, planned: list[PlannedEntry], known_urls: dict[str, str] | None = None,
                  policy: str = STRICT, audit: WriteAudit | None = None) -> list[EntryOutcome]:
    """Apply entries as one all-or-nothing unit; raises TransactionFailed (nothing written) or InputError.
    audit: the write's AuditEvent is appended in the same transaction, with its last rows (Transaction.run)."""
    if not planned:
        return []
    if audit is not None:
        audit_log.before_write_event(engine)
    # The event goes in with the transaction's last rows (Transaction.run): on PostgreSQL in their pipeline.
    return db.write(engine, lambda conn: Transaction(conn, dict(known_urls or {}), policy, audit=audit).run(planned))


def _audited(engine: Engine, work: Callable[[Connection], list[EntryOutcome]], audit: WriteAudit | None) -> list[EntryOutcome]:
    """db.write(work), the event audit(outcomes) inserted before the commit: one commit (one fsync on SQLite)
    for the write and its audit row instead of two, and the row is exactly as durable as the write, never
    recorded for a write that rolled back. This process's queued read events are written first (their order)."""
    if audit is None:
        return db.write(engine, work)
    audit_log.before_write_event(engine)

    def work_and_event(conn: Connection) -> list[EntryOutcome]:
        outcomes = work(conn)
        event = audit(outcomes)
        if event is not None:
            audit_log.record_in(conn, event)
        return outcomes

    return db.write(engine, work_and_event)


def apply_batch(engine: Engine, planned: list[PlannedEntry], policy: str = STRICT,
                audit: WriteAudit | None = None) -> list[EntryOutcome]:
    """Batch semantics: each entry on its own (a savepoint each), all committed together; one failing entry
    fails alone with its outcome, the others are applied. audit: as for apply_entries."""
    def work(conn: Connection) -> list[EntryOutcome]:
        known: dict[str, str] = {}
        # Shared by the entries: an answer is forgotten when an entry's write could change it, and one found
        # inside a savepoint later rolled back was found before that entry wrote anything.
        references = conditional.References()
        outcomes = []
        for p in planned:
            if p.issues:
                outcomes.append(EntryOutcome(STATUS_TEXT[400], issues=p.issues))
                continue
            try:
                with conn.begin_nested():
                    (outcome,) = Transaction(conn, known, policy, references).run([p])
            except TransactionFailed as exc:
                outcome = EntryOutcome(STATUS_TEXT.get(exc.status, str(exc.status)), issues=exc.issues)
            except InputError as exc:
                outcome = EntryOutcome(STATUS_TEXT.get(exc.status, str(exc.status)), issues=exc.issues)
            if outcome.location and p.full_url:
                known[p.full_url] = outcome.location.split("/_history")[0]
            outcomes.append(outcome)
        return outcomes

    return _audited(engine, work, audit)


STATUS_TEXT = {400: "400 Bad Request", 403: "403 Forbidden", 404: "404 Not Found", 409: "409 Conflict",
               410: "410 Gone", 412: "412 Precondition Failed", 422: "422 Unprocessable Entity"}


class Transaction:
    """One unit of work on an open write transaction: resolve ids, check, then write in processing order.

    Rows are written in bulk: the entries queue their resource rows (inserts, updates), versions, index rows and
    compartments, and _flush() writes each table in one statement for the whole transaction (an executemany
    INSERT ... RETURNING for the new resources). Anything that reads the database after an entry was applied
    (a GET entry, a conditional reference, a Provenance's owner) flushes first, so it sees the transaction's own
    writes as before."""

    def __init__(self, conn: Connection, urls: dict[str, str], policy: str,
                 references: conditional.References | None = None, audit: WriteAudit | None = None):
        self.conn, self.urls, self.policy, self.audit = conn, urls, policy, audit
        self.event: dict | None = None    # the write's AuditEvent, written by the last _flush
        self.stamp = now_ms()
        self.stamp_text = instant(self.stamp)   # every version of the transaction has this lastUpdated
        self.issues: list[Issue] = []
        self.status = 400
        # Deferred to _flush(): new resource rows (with their version row and resource, pk still unknown),
        # updates of existing rows, version rows, resources whose old index rows go, new index rows, compartments.
        self.inserts: list[tuple[dict, dict, dict, str | None]] = []
        self.updates: list[dict] = []
        self.versions: list[dict] = []
        self.reindexed: list[int] = []
        self.index_rows: dict[str, list[tuple]] = {}
        self.touched: set[str] = set()
        self.held: dict[tuple[str, str], bool] = {}       # reference targets looked up: live here or not
        self.references = references if references is not None else conditional.References()
        self.conditional_refs: set[str] = set()           # every conditional reference of the entries

    def fail(self, issue: Issue, status: int) -> None:
        self.issues.append(issue)
        if self.status == 400 or status == 412:
            self.status = status

    def run(self, planned: list[PlannedEntry]) -> list[EntryOutcome]:
        ids = self._resolve_ids(planned)
        self._check_one_entry_per_resource(planned, ids)
        if self.issues:
            # Stop before any write: two entries on one resource would otherwise both insert it, and the
            # unique-key error (retried by db.write, then raised) became a 500 instead of this 400.
            raise TransactionFailed(self.issues, self.status)
        # A POST without criteria has a fresh id: no row to lock (a collision fails the insert, and the retry
        # draws another id).
        currents = self._lock_rows([(p.rtype, ids[p.index]) for p in planned
                                    if ids.get(p.index) and not (p.method == "POST" and p.condition is None)])
        produced = {f"{p.rtype}/{ids[p.index]}" for p in planned if p.method in ("POST", "PUT") and ids.get(p.index)}
        refs = self._collect_references(planned, produced)
        outcomes: dict[int, EntryOutcome] = {}
        for p in sorted(planned, key=lambda p: PROCESSING_ORDER.get(p.method, 9)):
            rid = ids.get(p.index)
            current = currents.get((p.rtype, rid)) if rid else None
            if p.method == "GET":
                self._flush()  # a GET entry sees the transaction's own writes
            outcomes[p.index] = self._apply(p, rid, current, produced, refs.get(p.index, []))
        if self.issues:
            raise TransactionFailed(self.issues, self.status)
        ordered = [outcomes[p.index] for p in planned]
        # The outcomes are final before the last rows are written: the event is known, and goes with them (one
        # statement in their pipeline on PostgreSQL instead of two round trips after it).
        self.event = self.audit(ordered) if self.audit is not None else None
        self._flush()
        if self.event is not None:   # nothing was left to flush (GET entries only, or writes that changed nothing)
            audit_log.record_in(self.conn, self.event)
        return ordered

    def _flush(self) -> None:
        """Write what the entries deferred, a statement per table for the whole transaction (not ~11 per resource):
        new resources (their pks drawn first), updated ones, versions, index rows (old ones deleted first), and one
        counter bump per compartment. On PostgreSQL the inserts and the bump go in one pipeline (row_writer.
        pipelined): the new resources' index rows are built while the server inserts the resources and versions,
        and the statements share one wait instead of one round trip each; errors are raised at the block's end."""
        if not (self.inserts or self.updates or self.versions or self.reindexed or self.index_rows or self.touched):
            return  # nothing deferred (a GET entry's flush): no pipeline round trip
        event, self.event = self.event, None
        rows = [row for row, _, _, _ in self.inserts]
        if rows:
            if db.is_sqlite(self.conn):
                # The pks SQLite itself would give (max + 1, the table has no AUTOINCREMENT and its rows are never
                # deleted), known before the insert: it goes through sqlite3's executemany, not SQLAlchemy's
                # INSERT ... RETURNING. Safe: this transaction holds the database's write lock (BEGIN IMMEDIATE).
                top = self.conn.exec_driver_sql("SELECT coalesce(max(pk), 0) FROM resources").scalar_one()
                pks: Iterable[int] = range(top + 1, top + 1 + len(rows))
            else:
                pks = row_writer.next_pks(self.conn, resources, len(rows))
            for row, pk in zip(rows, pks):
                row["pk"] = pk
        # SQLAlchemy statements run before the pipelined block, which cannot hold them: updates of existing rows and
        # the removal of their old index rows (neither touches the new rows, nor the index rows inserted below).
        if self.updates:
            self.conn.execute(_UPDATE_RESOURCE, self.updates)
        indexing.delete_index(self.conn, self.reindexed)
        with row_writer.pipelined(self.conn):
            row_writer.insert_rows(self.conn, resources, rows)
            for row, version, _, _ in self.inserts:
                version["res_pk"] = row["pk"]
            row_writer.insert_rows(self.conn, resource_versions, self.versions)
            for row, _, resource, patient in self.inserts:
                indexing.collect_rows(row["pk"], resource, patient, self.index_rows)
            indexing.insert_index(self.conn, self.index_rows)
            self._bump(self.touched)
            if event is not None:
                audit_log.record_in(self.conn, event)
        self.inserts, self.updates, self.versions, self.reindexed, self.index_rows, self.touched = [], [], [], [], {}, set()

    # -- ids -------------------------------------------------------------------------------------------------
    def _resolve_ids(self, planned: list[PlannedEntry]) -> dict[int, str | None]:
        ids: dict[int, str | None] = {}
        conditions = [p for p in planned if p.method != "GET" and p.condition is not None]
        matches = self._match_conditions(conditions)
        for p in planned:
            if p.method == "GET":
                ids[p.index] = p.rid
                continue
            if p.condition is not None:
                ids[p.index] = self._conditional_id(p, matches[p.index])
            elif p.rid:
                ids[p.index] = p.rid
            else:
                ids[p.index] = new_resource_id()
            if p.full_url and ids[p.index] and p.method in ("POST", "PUT"):
                self.urls[p.full_url] = f"{p.rtype}/{ids[p.index]}"
        return ids

    def _match_conditions(self, conditions: list[PlannedEntry]) -> dict[int, list[str]]:
        """The matches (ids, at most 2) of every conditional entry's criteria, after one advisory lock statement
        on all of them; `identifier=system|value` criteria in one query (store.conditional), others one by one."""
        from store.search import match_rows

        if not conditions:
            return {}
        db.lock_all(self.conn, [conditional.lock_name(p.rtype, p.condition or []) for p in conditions])
        fast = {p.index: conditional.identifier_criterion(p.rtype, list(p.condition or [])) for p in conditions}
        found = conditional.match_identifiers(self.conn, {c for c in fast.values() if c is not None})
        matches: dict[int, list[str]] = {}
        for p in conditions:
            criterion = fast[p.index]
            if criterion is not None:
                matches[p.index] = found[criterion]
                continue
            source = "ifNoneExist" if p.method == "POST" else "url"
            with _entry_path(f"{p.path}.request.{source}"):
                matches[p.index] = [m["res_id"] for m in match_rows(self.conn, p.rtype, list(p.condition or []), 2)]
        return matches

    def _conditional_id(self, p: PlannedEntry, matches: list[str]) -> str | None:
        criteria = "&".join(f"{k}={v}" for k, v in sorted(p.condition or []))
        where = f"{p.path}.request"
        if len(matches) > 1:
            self.fail(Issue(where, f"the criteria {p.rtype}?{criteria} match more than one resource", "multiple-matches"), 412)
            return None
        if matches:
            found = matches[0]
            if p.method == "PUT" and p.resource and p.resource.get("id") not in (None, found):
                self.fail(Issue(f"{p.path}.resource.id", f"the resource id {p.resource['id']!r} differs from the match {found!r}", "invalid"), 400)
            return found
        if p.method == "DELETE":
            return None
        if p.method == "PUT":
            given = (p.resource or {}).get("id")
            if given and self._live(p.rtype, given):
                # No match, but the body names another resource that exists: updating it would overwrite a
                # resource the criteria did not select (R5 http.html#cond-update spells this out as 409).
                self.fail(Issue(f"{p.path}.resource.id", f"{p.rtype}/{given} exists and does not match the criteria "
                                f"{p.rtype}?{criteria}", "conflict"), 409)
                return None
            pairs = list(p.condition or [])
            # By identifier alone the id derives from 'system|value' (as the Redis store did): the same upsert
            # replayed, or sent to two gateways, names the same resource.
            token = pairs[0][1] if len(pairs) == 1 and pairs[0][0] == "identifier" else criteria
            return given or conditional_id(p.rtype, token)
        return new_resource_id()

    def _live(self, rtype: str, rid: str) -> bool:
        return self.conn.execute(select(resources.c.pk).where(
            resources.c.res_type == rtype, resources.c.res_id == rid, resources.c.deleted.is_(False))).first() is not None

    def _check_one_entry_per_resource(self, planned: list[PlannedEntry], ids: dict[int, str | None]) -> None:
        seen: dict[str, int] = {}
        for p in planned:
            rid = ids.get(p.index)
            if not rid or p.method == "GET":
                continue
            key = f"{p.rtype}/{rid}"
            if key in seen:
                self.fail(Issue(p.path, f"{key} is also the target of entry[{seen[key]}]: one entry per resource in a transaction", "invalid"), 400)
            seen.setdefault(key, p.index)

    def _lock_rows(self, keys: list[tuple[str, str | None]]) -> dict[tuple[str, str], dict]:
        wanted = sorted({(t, i) for t, i in keys if i})
        if not wanted:
            return {}
        query, params = _keys_query(wanted, "rows" if db.is_sqlite(self.conn) else "locked rows")
        return {(r.res_type, r.res_id): r._asdict() for r in self.conn.execute(query, params)}

    # -- references ------------------------------------------------------------------------------------------
    def _collect_references(self, planned: list[PlannedEntry], produced: set[str]) -> dict[int, list[Reference]]:
        """Per entry written, its (path, reference) pairs, walked once; the literal targets of all of them are
        looked up in one query (self.held), the conditional ones are noted for one search (self.references)."""
        refs: dict[int, list[Reference]] = {}
        targets: set[tuple[str, str]] = set()
        for p in planned:
            if p.method not in ("POST", "PUT") or not isinstance(p.resource, dict):
                continue
            found = p.refs if p.refs is not None else [
                Reference(path, ref, ()) for path, ref in iter_references(p.resource, f"{p.path}.resource")]
            refs[p.index] = found
            for _, ref, _ in found:
                ref = self.urls.get(ref, ref)
                if conditional.is_conditional(ref):
                    self.conditional_refs.add(ref)
                    continue
                if ref in produced:   # made by this transaction: nothing to look up (and no reference to parse)
                    continue
                target = _literal_target(ref)
                if target is not None:
                    targets.add(target)
        self._look_up_targets(targets)
        return refs

    def _look_up_targets(self, targets: set[tuple[str, str]]) -> None:
        wanted = sorted(targets - set(self.held))
        for i in range(0, len(wanted), conditional.CHUNK):
            chunk = wanted[i:i + conditional.CHUNK]
            live = {(r.res_type, r.res_id) for r in self.conn.execute(*_keys_query(chunk, "live keys"))}
            self.held.update({key: key in live for key in chunk})

    def _resolve_conditional_references(self, refs: list[tuple[str, str]], path: str) -> dict[str, str]:
        """`Type?criteria` references resolve by search to the one match (http.html#trules); none or several fail.
        The first entry that needs one searches them all (after its criteria's advisory locks); a write that could
        change an answer makes the next entry needing it search again (store.conditional.References)."""
        wanted = {ref for _, ref in refs if conditional.is_conditional(ref)}
        if not wanted:
            return {}
        missing = self.references.missing(wanted)
        if missing:
            self._flush()  # the search must see what earlier entries of this transaction created
            every = self.references.missing(self.conditional_refs | wanted)
            db.lock_all(self.conn, self.references.lock_names(every))
            self.references.resolve(self.conn, every)
        resolved: dict[str, str] = {}
        for ref in sorted(wanted):
            answer = self.references.known[ref]
            if isinstance(answer, InputError):
                for issue in answer.issues:
                    self.fail(Issue(path, f"conditional reference {ref!r}: {issue.message}", issue.code), 400)
                continue
            if len(answer) != 1:
                what = "no resource" if not answer else "more than one resource"
                self.fail(Issue(path, f"conditional reference {ref!r} matches {what}", "not-found" if not answer else "multiple-matches"),
                          404 if not answer else 412)
                continue
            rtype = ref.partition("?")[0]
            resolved[ref] = f"{rtype}/{answer[0]}"
            self.held.setdefault((rtype, answer[0]), True)   # found live by the search: no second lookup
        return resolved

    def _check_targets(self, refs: list[tuple[str, str]], produced: set[str]) -> list[Issue]:
        """Relative references must name a resource held here or made by this transaction (strict), or are kept
        verbatim with a warning (lenient). urn: references were resolved at planning or fail there."""
        checked = []
        for ref_path, ref in refs:
            if ref in produced:
                continue
            target = _literal_target(ref)
            if target is None:
                continue
            checked.append((ref_path, ref, target))
        if not checked:
            return []
        self._look_up_targets({target for _, _, target in checked})  # conditional references resolved since
        warnings = []
        for ref_path, ref, target in checked:
            if self.held[target]:
                continue
            message = f"reference {ref!r} points to a resource this server does not hold"
            if self.policy == LENIENT:
                warnings.append(Issue(ref_path, message + "; kept as sent", "not-found", "warning"))
            else:
                self.fail(Issue(ref_path, message, "not-found"), 404)
        return warnings

    # -- one entry -------------------------------------------------------------------------------------------
    def _apply(self, p: PlannedEntry, rid: str | None, row: dict | None, produced: set[str],
               refs: list[Reference]) -> EntryOutcome:
        if p.method == "GET":
            return self._get(p)
        if p.condition is not None and rid is None:
            return EntryOutcome("204 No Content" if p.method == "DELETE" else "412 Precondition Failed")
        live = row is not None and not row["deleted"]
        current = json.loads(row["body"]) if row is not None and live else None
        if p.if_match and not _matches_version(p.if_match, row if live else None):
            have = row["version"] if row is not None and live else "none"
            self.fail(Issue(f"{p.path}.request.ifMatch", f"version mismatch: ifMatch {p.if_match}, current {have}", "conflict"), 412)
            return EntryOutcome(STATUS_TEXT[412])
        if p.method == "DELETE":
            return self._delete(p, rid, row, current)
        if p.method == "POST" and p.condition is not None and current is not None:
            return _existing(p.rtype, rid, row, current)
        assert rid is not None and p.resource is not None
        mapped = [(path, self.urls.get(ref, ref)) for path, ref, _ in refs]
        resolved = self._resolve_conditional_references(mapped, p.path)
        if resolved:
            mapped = [(path, resolved.get(ref, ref)) for path, ref in mapped]
        # A copy only where a reference changes: the planned resource stays as sent (db.write may run this again).
        changes = [(r, new) for r, (_, new) in zip(refs, mapped) if r.value != new]
        if not changes:
            resource = dict(p.resource)
        elif p.refs is not None:
            resource = replace_references(p.resource, [(r.keys, new) for r, new in changes])
        else:
            changed = {r.value: new for r, new in changes}
            resource = cast(dict, rewrite_references(p.resource, lambda ref: changed.get(ref, ref)))
        resource["id"] = rid
        warnings = self._check_targets(mapped, produced)
        if current is not None and content(current) == content(resource):
            outcome = _existing(p.rtype, rid, row, current)
            outcome.issues = warnings
            return outcome
        return self._put(p, rid, row, resource, warnings)

    def _get(self, p: PlannedEntry) -> EntryOutcome:
        from store.search import search

        if p.rid:
            row = self.conn.execute(select(resources).where(resources.c.res_type == p.rtype, resources.c.res_id == p.rid)).first()
            if row is None or row.deleted:
                return EntryOutcome(STATUS_TEXT[404 if row is None else 410])
            return EntryOutcome("200 OK", etag=f'W/"{row.version}"', last_modified=instant(row.last_updated),
                                body=json.loads(row.body))
        with _entry_path(f"{p.path}.request.url"):
            result = search(self.conn, p.rtype, list(p.condition or []))
        return EntryOutcome("200 OK", body={"resourceType": "Bundle", "type": "searchset", "total": result.total,
                                            "entry": [{"resource": json.loads(r["body"]), "search": {"mode": "match"}} for r in result.rows]})

    def _delete(self, p: PlannedEntry, rid: str | None, row: dict | None, current: dict | None) -> EntryOutcome:
        if current is None or row is None:
            return EntryOutcome("204 No Content")  # deleting what is not there (any more) succeeds (http.html#delete)
        assert rid is not None
        version = row["version"] + 1
        old_patient = row["patient_id"]
        self.updates.append({"b_pk": row["pk"], "b_version": version, "b_deleted": True, "b_last_updated": self.stamp,
                             "b_patient_id": old_patient, "b_body": None})
        self.versions.append(self._version_row(row["pk"], p.rtype, rid, version, "DELETE", old_patient, None))
        self.reindexed.append(row["pk"])
        self.held[(p.rtype, rid)] = False          # later entries referring to it: not held any more
        self.references.written(p.rtype, rid, None)
        patients = {old_patient} - {None}
        self.touched |= patients
        return EntryOutcome("204 No Content", etag=f'W/"{version}"', patients=patients, patient=old_patient)

    def _put(self, p: PlannedEntry, rid: str, row: dict | None, resource: dict, warnings: list[Issue]) -> EntryOutcome:
        version = row["version"] + 1 if row else 1
        stamp = self.stamp_text
        meta = {k: v for k, v in resource.get("meta", {}).items() if k not in ("versionId", "lastUpdated")}
        resource = {"resourceType": p.rtype, "id": rid, "meta": {**meta, "versionId": str(version), "lastUpdated": stamp},
                    **{k: v for k, v in resource.items() if k not in ("resourceType", "id", "meta")}}
        patient = patient_of(resource) or self._provenance_owner(resource)
        if row is not None and not row["deleted"] and row["patient_id"] and patient != row["patient_id"]:
            # Issue 15: a conditional update by identifier could move patient A's record into patient B's chart.
            self.fail(Issue(f"{p.path}.resource", f"{p.rtype}/{rid} belongs to another patient's compartment; an update "
                            "cannot move it (delete it and create it for the other patient)", "conflict"), 409)
            return EntryOutcome(STATUS_TEXT[409])
        body = dumps(resource)
        method = "POST" if p.method == "POST" else "PUT"
        if row is None:
            version_row = self._version_row(None, p.rtype, rid, version, method, patient, body)
            self.inserts.append(({"res_type": p.rtype, "res_id": rid, "version": version, "deleted": False,
                                  "last_updated": self.stamp, "patient_id": patient, "body": body}, version_row, resource, patient))
        else:
            pk = row["pk"]
            self.updates.append({"b_pk": pk, "b_version": version, "b_deleted": False, "b_last_updated": self.stamp,
                                 "b_patient_id": patient, "b_body": body})
            version_row = self._version_row(pk, p.rtype, rid, version, method, patient, body)
            self.reindexed.append(pk)
            indexing.collect_rows(pk, resource, patient, self.index_rows)
        self.versions.append(version_row)   # in processing order: seq orders the history
        self.references.written(p.rtype, rid, resource)
        patients = {pid for pid in (patient, row["patient_id"] if row else None) if pid}
        self.touched |= patients
        created = row is None or bool(row["deleted"])
        return EntryOutcome("201 Created" if created else "200 OK", f"{p.rtype}/{rid}/_history/{version}", f'W/"{version}"',
                            stamp, resource, warnings, patient, patients, created)

    def _version_row(self, pk: int | None, rtype: str, rid: str, version: int, method: str, patient: str | None,
                     body: str | None) -> dict:
        return {"res_pk": pk, "res_type": rtype, "res_id": rid, "version": version, "method": method,
                "last_updated": self.stamp, "patient_id": patient, "body": body}

    def _bump(self, patients: set[str]) -> None:
        """The compartments' write counters move in the write's transaction: cached views of them are then
        unreachable. One executemany upsert for all of them. Before it, the Redis version mirror marks them
        (store/version_mirror.py: one round trip; its fences are set when store.db.write ends the transaction)."""
        from store import version_mirror  # here, not at the top: this edit stays clear of the module's imports

        version_mirror.mark_writers(self.conn, patients)
        if not patients:
            return
        if row_writer.send(self.conn, _BUMP_PIPELINED, [self.stamp, sorted(patients)]):
            return  # in _flush's pipeline (PostgreSQL): the same upsert, its rows in the same (sorted) order
        dialect = self.conn.dialect.name
        statement = _BUMP.get(dialect)
        if statement is None:
            statement = _BUMP[dialect] = db.upsert_statement(
                self.conn, patient_state, ["patient_id"], ["patient_id", "version", "changed_at"],
                changes=lambda new: {"version": patient_state.c.version + 1, "changed_at": new.changed_at})
        self.conn.execute(statement, [{"patient_id": pid, "version": 1, "changed_at": self.stamp} for pid in sorted(patients)])

    def _provenance_owner(self, resource: dict) -> str | None:
        """A Provenance joins the compartment of the first target that has one."""
        if resource.get("resourceType") != "Provenance":
            return None
        if self.inserts:
            self._flush()  # a target may be a resource this transaction created
        for target in resource.get("target", []):
            rtype, rid = parse_reference(target.get("reference", ""))
            if rtype:
                found = self.conn.execute(select(resources.c.patient_id).where(
                    resources.c.res_type == rtype, resources.c.res_id == rid)).scalar()
                if found:
                    return found
        return None


_BUMP: dict[str, Any] = {}  # per dialect: the patient_state upsert of _bump, built once (db.upsert_statement)
# _bump's upsert as one statement of a psycopg pipeline (PostgreSQL): one row per patient, in the array's order.
_BUMP_PIPELINED = ("INSERT INTO patient_state (patient_id, version, changed_at) "
                   "SELECT u.patient_id, 1, %b::bigint FROM unnest(%b::text[]) AS u(patient_id) "
                   "ON CONFLICT (patient_id) DO UPDATE SET version = patient_state.version + 1, "
                   "changed_at = excluded.changed_at")

_UPDATE_RESOURCE = update(resources).where(resources.c.pk == bindparam("b_pk")).values(
    version=bindparam("b_version"), deleted=bindparam("b_deleted"), last_updated=bindparam("b_last_updated"),
    patient_id=bindparam("b_patient_id"), body=bindparam("b_body"))


def _keys_query(keys: list[tuple[str, str]], shape: str) -> tuple[Select, dict]:
    """The query of the resources with these (type, id) keys, and its parameters. `type = T AND id IN (...)` per
    type: SQLite answers a row-value `(type, id) IN (VALUES ...)` by scanning the whole table, this by the unique
    index. The statement is built once per shape and number of types, its types and ids bound: building it per
    call (and its cache key) cost ~0.5 ms, more than running it (bench/ingest.py)."""
    by_type: dict[str, list[str]] = {}
    for rtype, rid in keys:
        by_type.setdefault(rtype, []).append(rid)
    params: dict = {}
    for k, (rtype, ids) in enumerate(sorted(by_type.items())):
        params[f"t{k}"], params[f"i{k}"] = rtype, ids
    return _keys_statement(shape, len(by_type)), params


@lru_cache(maxsize=None)
def _keys_statement(shape: str, types: int) -> Select:
    where = or_(*(and_(resources.c.res_type == bindparam(f"t{k}"), conditional.in_bound(resources.c.res_id, f"i{k}"))
                  for k in range(types)))
    if shape == "live keys":
        return select(resources.c.res_type, resources.c.res_id).where(where, resources.c.deleted.is_(False))
    query = select(resources).where(where)
    return query.order_by(resources.c.pk).with_for_update() if shape == "locked rows" else query


def _literal_target(ref: str) -> tuple[str, str] | None:
    """(type, id) of a relative literal reference checked against the store; None for absolute, contained,
    urn: and conditional references."""
    if ref.startswith(("http://", "https://", "#", "urn:")) or "?" in ref:
        return None
    rtype, rid = parse_reference(ref)
    return (rtype, rid) if rtype is not None and rid is not None else None


@contextlib.contextmanager
def _entry_path(path: str) -> Iterator[None]:
    """A search that refuses its criteria names the parameter (Patient?foo); the entry it came from goes first,
    so that a Bundle's error says which entry failed."""
    try:
        yield
    except InputError as exc:
        raise InputError([Issue(path, f"{i.path}: {i.message}", i.code, i.severity) for i in exc.issues], exc.status) from None


def _matches_version(if_match: str, row: dict | None) -> bool:
    if row is None:
        return False
    wanted = if_match.strip()
    return wanted in (f'W/"{row["version"]}"', f'"{row["version"]}"', str(row["version"]))


def _existing(rtype: str, rid: str | None, row: dict | None, current: dict) -> EntryOutcome:
    assert row is not None
    version = row["version"]
    return EntryOutcome("200 OK", f"{rtype}/{rid}/_history/{version}", f'W/"{version}"', instant(row["last_updated"]),
                        current, patient=row["patient_id"])

