"""Sync bookkeeping (id maps, baselines, watermarks, conflicts) lives in the store of record, on both engines, and
survives a Redis flush."""
from __future__ import annotations

from workers import conflicts, sync_state
from workers.sync_state import Baseline


def test_id_map_answers_both_directions_per_upstream(db_engine):
    sync_state.remember_ids(db_engine, "north", {"Patient/local-1": "up-1", "Observation/local-2": "up-2"})
    sync_state.remember_ids(db_engine, "south", {"Patient/local-1": "other"})
    assert sync_state.upstream_ids(db_engine, "north", ["Patient/local-1", "Observation/local-2", "Patient/none"]) == {
        "Patient/local-1": "up-1", "Observation/local-2": "up-2"}
    assert sync_state.local_ids(db_engine, "north", ["Patient/up-1", "Observation/up-2", "Patient/up-2"]) == {
        "Patient/up-1": "local-1", "Observation/up-2": "local-2"}
    assert sync_state.upstream_id(db_engine, "south", "Patient/local-1") == "other"
    sync_state.remember_ids(db_engine, "north", {"Patient/local-1": "up-1b"})  # the upstream re-created it
    assert sync_state.upstream_id(db_engine, "north", "Patient/local-1") == "up-1b"
    assert sync_state.local_ids(db_engine, "north", ["Patient/up-1"]) == {}


def test_many_refs_are_looked_up_in_chunks(db_engine):
    pairs = {f"Observation/o{i}": f"u{i}" for i in range(1200)}
    sync_state.remember_ids(db_engine, "north", pairs)
    assert sync_state.upstream_ids(db_engine, "north", list(pairs)) == pairs


def test_baselines_are_replaced_not_duplicated(db_engine):
    sync_state.save_baselines(db_engine, "north", {"Patient/a": Baseline("1", "h1"), "Patient/b": Baseline("3", "h3")})
    sync_state.save_baselines(db_engine, "north", {"Patient/a": Baseline("2", "h2")})
    assert sync_state.baselines(db_engine, "north", ["Patient/a", "Patient/b", "Patient/c"]) == {
        "Patient/a": Baseline("2", "h2"), "Patient/b": Baseline("3", "h3")}
    assert sync_state.baselines(db_engine, "south", ["Patient/a"]) == {}


def test_watermarks_only_move_forwards(db_engine):
    assert sync_state.pull_watermark(db_engine, "north", "all") is None
    sync_state.save_pull_watermark(db_engine, "north", "all", "2026-01-02T00:00:00Z")
    sync_state.save_pull_watermark(db_engine, "north", "all", "2026-01-01T00:00:00Z")  # a slow job finishing late
    assert sync_state.pull_watermark(db_engine, "north", "all") == "2026-01-02T00:00:00Z"
    assert sync_state.pull_watermark(db_engine, "north", "p-1") is None  # per scope
    sync_state.save_push_watermark(db_engine, "north", 999)
    sync_state.save_push_watermark(db_engine, "north", 1_700_000_000_000)
    sync_state.save_push_watermark(db_engine, "north", 5_000)  # shorter number, earlier time: ignored
    assert sync_state.push_watermark(db_engine, "north") == 1_700_000_000_000


def test_conflicts_are_listed_by_status_and_resolution_rewrites_the_baseline(db_engine, redis_client):
    remote = {"resourceType": "Observation", "id": "up-9", "meta": {"versionId": "4"}, "status": "final"}
    local = {"resourceType": "Observation", "id": "o-9", "status": "amended"}
    short = conflicts.record(db_engine, "north", "Observation/o-9", "p-1", local, remote, ["status"], "job-1")
    conflicts.record(db_engine, "south", "Observation/o-8", None, None, {**remote, "id": "up-8"}, ["$"], None)
    redis_client.flushdb()  # nothing of it lived in Redis
    entry = conflicts.get(db_engine, short["id"])
    assert entry["upstreamCopy"] == remote and entry["local"] == local and entry["status"] == "open"
    assert [e["upstream"] for e in conflicts.list_all(db_engine)] == ["north", "south"]
    assert [e["resource"] for e in conflicts.list_all(db_engine, "north")] == ["Observation/o-9"]
    resolved = conflicts.resolve(db_engine, entry, "local", local)
    assert resolved["status"] == "resolved-keep-local"
    assert [e["upstream"] for e in conflicts.list_all(db_engine)] == ["south"]
    assert [e["id"] for e in conflicts.list_all(db_engine, status="resolved-keep-local")] == [short["id"]]
    assert sync_state.baselines(db_engine, "north", ["Observation/o-9"]) == {
        "Observation/o-9": Baseline("4", "resolved-keep-local")}
