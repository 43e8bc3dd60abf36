"""The Redis mirror of the patient version (store/version_mirror.py): a cached $everything takes the version from
Redis instead of SQL, and still never serves a view older than a write already acknowledged to any client, by
any process, with Redis up, flushed, down, or unreachable for the writing process only.

Real gateway processes (`python -m service`) on one database (each engine) and the test Redis; where one
process must lose Redis, or be stopped at an exact point, its Redis connection goes through RedisPath, a TCP
proxy that can be cut, or can hold one Lua script of the mirror (found by the tag in its first line).
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import redis
import requests
from fault_load import observation_bundle, patient_bundle, session
from gateway_setup import api_keys_config, authorised_client, gateway_config
from live_gateway import wait_healthy
from net import free_port
from polling import wait_for
from sqlalchemy import event

from store import db, reads, version_mirror

REPO = Path(__file__).resolve().parent.parent


class RedisPath:
    """A TCP proxy to Redis for one gateway process. cut(): every connection is closed and new ones are refused
    at once, as if Redis were unreachable for that process only. hold_request(tag): the next request carrying
    tag waits here (not yet sent to Redis) until release(). hold_reply(tag): Redis gets it and applies it, but
    its reply waits here until release()."""

    def __init__(self, redis_url: str) -> None:
        target = redis_url.split("//", 1)[1].split("/", 1)[0]
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.database = redis_url.rsplit("/", 1)[1]
        self.cut_off = False
        self.request_tag: bytes | None = None
        self.reply_tag: bytes | None = None
        self.held = threading.Event()
        self.released = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self._server.getsockname()[1]}/{self.database}"
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        self.cut_off = True
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self._sockets.clear()

    def restore(self) -> None:
        self.cut_off = False

    def hold_request(self, tag: bytes) -> None:
        self.held.clear(), self.released.clear()
        self.request_tag = tag

    def hold_reply(self, tag: bytes) -> None:
        self.held.clear(), self.released.clear()
        self.reply_tag = tag

    def release(self) -> None:
        self.request_tag = self.reply_tag = None
        self.released.set()

    def close(self) -> None:
        self.release()
        self.cut()
        self._server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self.cut_off:
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._sockets += [client, upstream]
            hold_next_reply = threading.Event()
            threading.Thread(target=self._pump, args=(client, upstream, hold_next_reply, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, hold_next_reply, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, hold_next_reply: threading.Event, requests_: bool) -> None:
        try:
            while data := source.recv(65536):
                if requests_ and self.request_tag and self.request_tag in data:
                    self.held.set()
                    self.released.wait()
                if requests_ and self.reply_tag and self.reply_tag in data:
                    hold_next_reply.set()
                if not requests_ and hold_next_reply.is_set():
                    self.held.set()
                    self.released.wait()
                    hold_next_reply.clear()
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.close()


@contextlib.contextmanager
def gateway(redis_url: str, database_url: str, **env: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """A gateway process (the test API key works); yields its base URL and the process."""
    port = free_port()
    full_env = {**os.environ, "REDIS_URL": redis_url, "GATEWAY_DATABASE_URL": database_url, "GATEWAY_PORT": str(port),
                "GATEWAY_API_KEYS": api_keys_config(), "GATEWAY_EMBEDDED_STACK": "0", "GATEWAY_RATE_LIMIT": "1000000/minute",
                "PYTHONUNBUFFERED": "1", **env}
    proc = subprocess.Popen([sys.executable, "-m", "service"], cwd=REPO, env=full_env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=20)


def everything(s: requests.Session, base: str, pid: str) -> tuple[int, int]:
    """(total, version) of a $everything read; the version is the one in the ETag."""
    response = s.get(f"{base}/Patient/{pid}/$everything?_count=1", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["total"], int(response.headers["ETag"].split('"')[1].split(".")[-2])


def write(s: requests.Session, base: str, pid: str, n: int) -> None:
    response = s.post(f"{base}/Bundle", data=json.dumps(observation_bundle(pid, n)), timeout=60)
    assert response.status_code == 200, response.text


def mirrored(client: redis.Redis, pid: str, lease: float) -> bool:
    """The mirror's own read script would serve this patient's version now, with at least 60% of the lease ahead."""
    status, now, *_ = client.eval(version_mirror.READ, 1, version_mirror.key(pid))
    expires = client.hget(version_mirror.key(pid), "e")
    return status == 1 and expires is not None and int(expires) - now > 0.6 * lease * 1000


def warm(s: requests.Session, base: str, client: redis.Redis, pid: str, lease: float) -> None:
    """Read through base until the mirror holds this patient's version, freshly filled."""
    def read_and_check() -> bool:
        everything(s, base, pid)
        return mirrored(client, pid, lease)
    wait_for(read_and_check, 20, 0.02, "the mirror to hold the patient's version")


@pytest.fixture
def proxies(redis_url, redis_client) -> Iterator[list[RedisPath]]:
    made: list[RedisPath] = []
    yield made
    for proxy in made:
        proxy.close()


def _proxy(proxies: list[RedisPath], redis_url: str) -> RedisPath:
    proxies.append(RedisPath(redis_url))
    return proxies[-1]


def test_reads_through_one_gateway_never_miss_a_write_acknowledged_by_another(redis_url, redis_client, db_engine, database_url):
    """(a) and (d): writes through A at random gaps (some longer than the lease, so the mirror serves reads in
    between), reads through B in a tight loop, Redis flushed now and then: every read shows every write that
    was acknowledged before it was sent."""
    lease, pid = 0.3, "mirror-a"
    env = {"GATEWAY_VERSION_MIRROR_SECONDS": str(lease)}
    with gateway(redis_url, database_url, **env) as (a, _), gateway(redis_url, database_url, **env) as (b, _):
        assert session().post(f"{a}/Bundle", json=patient_bundle(pid)).status_code == 200
        acknowledged = [0]
        stop = threading.Event()
        stale: list[tuple[int, int, int]] = []
        reads_done = [0]
        mirror_seen = [0]
        flushes = [0]
        lock = threading.Lock()

        def writer(first: int) -> None:
            s = session()
            for n in range(first, 10_000, 2):
                if stop.is_set():
                    return
                write(s, a, pid, n)
                with lock:
                    acknowledged[0] += 1
                time.sleep(random.uniform(0, 2.5 * lease))

        def reader() -> None:
            s = session()
            while not stop.is_set():
                with lock:
                    before = acknowledged[0]
                total, version = everything(s, b, pid)
                reads_done[0] += 1
                if total < 1 + before or version < 1 + before:  # the patient's PUT was version 1, each write adds 1
                    stale.append((total, version, 1 + before))

        def watcher() -> None:
            client = redis.Redis.from_url(redis_url)
            while not stop.wait(0.01):
                if b"v" in client.hgetall(version_mirror.key(pid)):
                    mirror_seen[0] += 1
                if random.random() < 0.02:
                    client.flushdb()
                    flushes[0] += 1

        threads = [threading.Thread(target=writer, args=(i,)) for i in (0, 1)]
        threads += [threading.Thread(target=reader) for _ in range(3)] + [threading.Thread(target=watcher)]
        for thread in threads:
            thread.start()
        # At least 8 s, and on a loaded machine (slower reads fill the mirror less often) up to 40 s, until the
        # mirror has served long enough for the run to prove something.
        started = time.monotonic()
        while time.monotonic() - started < 40 and (time.monotonic() - started < 8 or mirror_seen[0] < 20):
            time.sleep(0.1)
        stop.set()
        for thread in threads:
            thread.join()
    assert stale == [], f"{len(stale)} of {reads_done[0]} reads missed an acknowledged write"
    assert acknowledged[0] >= 10 and reads_done[0] >= 200 and flushes[0] >= 3
    assert mirror_seen[0] >= 20, "the mirror was hardly ever filled: the test proved nothing"


@pytest.mark.parametrize("flush", [False, True], ids=["fence", "flushed"])
def test_a_fill_from_a_read_older_than_an_acknowledged_write_is_refused(redis_url, redis_client, db_engine, database_url,
                                                                        proxies, flush):
    """(d) B's fill, from a SQL read taken before A's write, is held in B's Redis path until after A acknowledged
    it (and, flushed: after Redis was flushed, which takes A's fence with it). The fill must not land: a read
    after it sees the write."""
    lease, pid = 3.0, "mirror-fill"
    path_b = _proxy(proxies, redis_url)
    env = {"GATEWAY_VERSION_MIRROR_SECONDS": str(lease)}
    with gateway(redis_url, database_url, **env) as (a, _), gateway(path_b.url, database_url, **env) as (b, _):
        s = session()
        assert s.post(f"{a}/Bundle", json=patient_bundle(pid)).status_code == 200
        warm(s, b, redis_client, pid, lease)
        wait_for(lambda: not mirrored(redis_client, pid, 0), lease + 2, 0.05, "the mirrored value to expire")
        path_b.hold_request(b"version-mirror:fill")
        held_read = threading.Thread(target=everything, args=(session(), b, pid))
        held_read.start()
        assert path_b.held.wait(10), "B never offered a fill"
        write(s, a, pid, 1)  # acknowledged, while B's fill of the version before it waits
        if flush:
            redis_client.flushdb()
        path_b.release()
        held_read.join()
        assert everything(session(), b, pid) == (2, reads.patient_version(db_engine, pid)), \
            "a read after the acknowledged write missed it (its bundle or its ETag)"


def test_a_writer_that_cannot_reach_redis_waits_out_the_lease_before_it_acknowledges(redis_url, redis_client, db_engine,
                                                                                      database_url, proxies):
    """(b) A's Redis is cut (B's is not): A can neither mark nor fence, so it acknowledges only once every value
    filled before its commit has expired; B then never serves the version before A's write."""
    lease, pid = 2.0, "mirror-b"
    path_a, path_b = _proxy(proxies, redis_url), _proxy(proxies, redis_url)
    env = {"GATEWAY_VERSION_MIRROR_SECONDS": str(lease)}
    with gateway(path_a.url, database_url, **env) as (a, _), gateway(path_b.url, database_url, **env) as (b, _):
        s = session()
        assert s.post(f"{b}/Bundle", json=patient_bundle(pid)).status_code == 200
        warm(s, b, redis_client, pid, lease)
        path_a.cut()
        started = time.monotonic()
        write(s, a, pid, 1)  # the mirror still holds the version before it, fresh
        waited = time.monotonic() - started
        assert everything(s, b, pid) == (2, reads.patient_version(db_engine, pid)), \
            "B served the mirrored version from before A's acknowledged write"
        assert waited >= lease, f"A acknowledged after {waited:.2f} s, within the lease"

        # B's fill from a SQL read older than A's next write is held until A has acknowledged that write.
        wait_for(lambda: everything(s, b, pid) and mirrored(redis_client, pid, 0), 20, 0.05, "the mirror to refill")
        wait_for(lambda: not mirrored(redis_client, pid, 0), lease + 2, 0.05, "the mirrored value to expire")
        path_b.hold_request(b"version-mirror:fill")
        held_read = threading.Thread(target=everything, args=(session(), b, pid))
        held_read.start()
        assert path_b.held.wait(10), "B never offered a fill"
        write(s, a, pid, 2)
        path_b.release()
        held_read.join()
        assert everything(s, b, pid) == (3, reads.patient_version(db_engine, pid)), \
            "a fill from before A's acknowledged write was served"


def test_a_writer_killed_between_its_mark_and_its_commit_leaves_no_stale_or_stuck_mirror(redis_url, redis_client, db_engine,
                                                                                       database_url, proxies):
    """(c) A marks the patient (Redis applied it; A waits for the reply), then is SIGKILLed before it commits.
    Reads through B stay right, on SQL while the mark counts, and the mirror serves again once it stops counting;
    a later write through B is seen at once."""
    lease, pid = 1.0, "mirror-c"
    path_a = _proxy(proxies, redis_url)
    env = {"GATEWAY_VERSION_MIRROR_SECONDS": str(lease), "GATEWAY_VERSION_MIRROR_MARK_SECONDS": "3"}
    with gateway(path_a.url, database_url, **env) as (a, proc_a), gateway(redis_url, database_url, **env) as (b, _):
        s = session()
        assert s.post(f"{b}/Bundle", json=patient_bundle(pid)).status_code == 200
        warm(s, b, redis_client, pid, lease)
        path_a.hold_reply(b"version-mirror:mark")
        def post_until_killed() -> None:
            with contextlib.suppress(requests.RequestException):
                session().post(f"{a}/Bundle", data=json.dumps(observation_bundle(pid, 1)), timeout=60)
        stuck = threading.Thread(target=post_until_killed, daemon=True)
        stuck.start()
        assert path_a.held.wait(10), "A never marked the patient"
        assert int(redis_client.hget(version_mirror.key(pid), "w") or 0) == 1
        os.kill(proc_a.pid, signal.SIGKILL)
        proc_a.wait()
        marked_at = time.monotonic()
        path_a.release()
        assert everything(s, b, pid)[0] == 1, "the killed writer's transaction was not committed"
        assert not mirrored(redis_client, pid, 0), "the mark keeps the mirror from serving"
        wait_for(lambda: everything(s, b, pid)[0] == 1 and mirrored(redis_client, pid, 0), 20, 0.05,
                 "the mirror to serve again once the mark stopped counting")
        assert time.monotonic() - marked_at >= 2.5
        write(s, b, pid, 2)
        assert everything(s, b, pid) == (2, reads.patient_version(db_engine, pid))


def test_with_its_redis_unreachable_a_gateway_answers_reads_and_writes_uncached(redis_url, redis_client, db_engine,
                                                                                database_url, proxies):
    """(e) Redis cut for the only gateway: writes are acknowledged (after the lease) and reads answered from the
    database; once Redis is back the cache and the mirror fill again."""
    lease, pid = 0.5, "mirror-e"
    path = _proxy(proxies, redis_url)
    with gateway(path.url, database_url, GATEWAY_VERSION_MIRROR_SECONDS=str(lease)) as (a, _):
        s = session()
        assert s.post(f"{a}/Bundle", json=patient_bundle(pid)).status_code == 200
        warm(s, a, redis_client, pid, lease)
        path.cut()
        write(s, a, pid, 1)
        response = s.get(f"{a}/Patient/{pid}/$everything?_count=1", timeout=30)
        assert (response.status_code, response.json()["total"], response.headers["X-Cache"]) == (200, 2, "miss")
        path.restore()
        warm(s, a, redis_client, pid, lease)
        response = s.get(f"{a}/Patient/{pid}/$everything?_count=1", timeout=30)
        assert (response.status_code, response.json()["total"], response.headers["X-Cache"]) == (200, 2, "hit")


@contextlib.contextmanager
def sql_checkouts_in_this_thread(engine) -> Iterator[list[int]]:
    """Counts the connections taken from the store's pools by this thread (the request path runs in it under
    Flask's test client; the audit batch writer runs in its own thread): one per SQL statement or transaction."""
    count = [0]
    me = threading.get_ident()
    pools = {engine.pool, reads._lookup_engine(engine).pool}

    def counted(*_args) -> None:
        if threading.get_ident() == me:
            count[0] += 1
    for pool in pools:
        event.listen(pool, "checkout", counted)
    try:
        yield count
    finally:
        for pool in pools:
            event.remove(pool, "checkout", counted)


def test_a_cached_read_with_the_version_mirrored_makes_no_sql_statement(redis_url, redis_client, db_engine, database_url):
    """(f) Once the mirror holds the version, a cached $everything (and its 304) touches no database connection;
    a write then makes the next read take the new version."""
    from service import create_app

    lease, pid = 0.5, "mirror-f"
    app = create_app(gateway_config(redis_url, database_url, VERSION_MIRROR_SECONDS=lease))
    client = authorised_client(app)
    assert client.post("/Bundle", json=patient_bundle(pid)).status_code == 200
    url = f"/Patient/{pid}/$everything?_count=1"
    wait_for(lambda: client.get(url) and mirrored(redis_client, pid, lease), 20, 0.02, "the mirror to fill")
    with sql_checkouts_in_this_thread(db.engine_for(database_url)) as count:
        response = client.get(url)
        tag = response.headers["ETag"]
        not_modified = client.get(url, headers={"If-None-Match": tag})
    assert (response.status_code, response.headers["X-Cache"], response.json["total"]) == (200, "hit", 1)
    assert not_modified.status_code == 304 and not_modified.headers["ETag"] == tag
    assert count[0] == 0, f"{count[0]} SQL connection(s) taken by cached reads with the version mirrored"
    assert tag.split('"')[1].split(".")[-2] == str(reads.patient_version(db_engine, pid))
    assert client.post("/Bundle", data=json.dumps(observation_bundle(pid, 1)),
                       content_type="application/fhir+json").status_code == 200
    after = client.get(url)
    assert after.json["total"] == 2 and after.headers["ETag"] != tag


def test_a_write_by_a_worker_process_is_seen_by_a_gateway_reading_the_mirror(redis_url, redis_client, db_engine, database_url,
                                                                             tmp_path):
    """Workers write patient data too ($import, sync pulls): a `python -m workers` process imports an Observation
    while gateway B's mirror holds the version before it; once the import reports finished, B serves the import."""
    from sync_helpers import start_worker, stop_worker

    lease, pid = 3.0, "mirror-worker"
    env = {"GATEWAY_VERSION_MIRROR_SECONDS": str(lease), "GATEWAY_DATABASE_URL": database_url}
    worker = start_worker(redis_url, env, tmp_path / "worker.log", "mirror-worker")
    try:
        wait_for(lambda: redis_client.scard("rq:workers"), 60, 0.1, "the worker to register")
        with gateway(redis_url, database_url, **env) as (b, _):
            s = session()
            assert s.post(f"{b}/Bundle", json=patient_bundle(pid)).status_code == 200
            warm(s, b, redis_client, pid, lease)
            line = json.dumps({"resourceType": "Observation", "id": f"{pid}-imported", "status": "final",
                               "code": {"text": "imported"}, "subject": {"reference": f"Patient/{pid}"}})
            started = s.post(f"{b}/$import?name=one.ndjson", data=line.encode(), headers={
                "Content-Type": "application/fhir+ndjson", "Prefer": "respond-async"})
            assert started.status_code == 202, started.text
            location = started.headers["Content-Location"]
            status_url = location if location.startswith("http") else f"{b}{location}"
            wait_for(lambda: s.get(status_url).status_code == 200, 30, 0.02, "the import to finish")
            assert everything(s, b, pid) == (2, reads.patient_version(db_engine, pid)), \
                "B served the version from before the worker's finished import"
    finally:
        stop_worker(worker)
