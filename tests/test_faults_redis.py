"""Redis killed mid-load: Redis is only a cache (and queues, rate-limit counters) in front of the database of
record, so the gateway keeps answering reads and writes, uncached, while it is down; nothing clinical is lost;
once Redis is back the cache fills again, and no view cached before the outage is served stale.

Redis here is a private redis-server (service.redis_conn.start_private_redis), never the shared one on 6379.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time

import pytest
import redis
from fault_load import WriteLoad, patient_bundle, session
from live_gateway import live_gateway
from polling import wait_for
from reliability import record
from sqlalchemy import func, select

from service.redis_conn import start_private_redis
from store.schema import resource_versions, resources

pytestmark = pytest.mark.faults
TOTAL = 60


class PrivateRedis:
    """A private redis-server that the test can SIGKILL and start again on the same port and AOF folder."""

    def __init__(self) -> None:
        url = start_private_redis()
        if url is None:
            pytest.fail("the fault suite needs the redis-server binary", pytrace=False)
        self.url = url
        self.port = int(url.rsplit(":", 1)[1].split("/")[0])
        info = redis.Redis.from_url(url)
        self.pid = int(info.info("server")["process_id"])
        folder = info.config_get("dir")["dir"]
        self.folder: str = folder.decode() if isinstance(folder, bytes) else str(folder)
        self.restarted: subprocess.Popen | None = None

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        wait_for(lambda: not _answers(self.url), 10, 0.05, "redis-server to die")

    def start_again(self) -> None:
        self.restarted = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--bind", "127.0.0.1", "--port",
                                           str(self.port), "--dir", self.folder, "--appendonly", "yes", "--save", ""],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.pid = self.restarted.pid
        wait_for(lambda: _answers(self.url), 10, 0.05, "redis-server to start again")

    def close(self) -> None:
        if self.restarted is not None:
            self.restarted.kill()
            self.restarted.wait()
        else:
            os.kill(self.pid, signal.SIGTERM)
        shutil.rmtree(self.folder, ignore_errors=True)


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.2).ping())
    except (redis.RedisError, OSError):
        return False


@pytest.fixture
def own_redis():
    private = PrivateRedis()
    yield private
    private.close()


def _probe(base: str, pid: str, stop: threading.Event, answers: list) -> None:
    s = session()
    while not stop.is_set():
        for path in (f"/Patient/{pid}/$everything?_count=1000", f"/Patient/{pid}", f"/Observation?subject=Patient/{pid}&_count=5"):
            response = s.get(f"{base}{path}", timeout=30)
            answers.append((time.monotonic(), path, response.status_code, response.headers.get("X-Cache")))
        time.sleep(0.05)


def _held(engine, pid: str) -> tuple[int, int]:
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(resources).where(
            resources.c.res_type == "Observation", resources.c.patient_id == pid)).scalar_one()
        versions = conn.execute(select(func.count()).select_from(resource_versions).where(
            resource_versions.c.res_type == "Observation", resource_versions.c.patient_id == pid)).scalar_one()
    return count, versions


def test_redis_killed_mid_load_the_gateway_keeps_answering_uncached_and_loses_nothing(own_redis, db_engine, database_url):
    pid = "fault-redis-p1"
    with live_gateway(own_redis.url, database_url=database_url) as base:
        s = session()
        assert s.post(f"{base}/Bundle", json=patient_bundle(pid)).status_code == 200
        everything = f"{base}/Patient/{pid}/$everything?_count=1000"
        assert [s.get(everything).headers["X-Cache"] for _ in range(2)] == ["miss", "hit"]
        load = WriteLoad(base, pid, TOTAL)
        reads: list = []
        stop = threading.Event()
        times: dict[str, float] = {}

        def chaos() -> None:
            wait_for(lambda: len(load.acknowledged) >= TOTAL // 4, 60, 0.05, "a quarter of the writes")
            own_redis.kill()
            times["down"] = time.monotonic()
            wait_for(lambda: len(load.acknowledged) >= 3 * TOTAL // 4, 120, 0.05, "writes while Redis is down")
            times["restart"] = time.monotonic()
            own_redis.start_again()
            times["up"] = time.monotonic()

        threads = [threading.Thread(target=chaos), threading.Thread(target=_probe, args=(base, pid, stop, reads))]
        for thread in threads:
            thread.start()
        load.run()
        threads[0].join()
        stop.set()
        threads[1].join()
        after = [s.get(everything) for _ in range(2)]
        hit_again = time.monotonic()

    assert "up" in times, "Redis was not killed and restarted during the load"
    assert [(a.status, a.body) for a in load.not_ok()] == [], "every write is answered 200 while Redis is down"
    assert sorted(load.acknowledged) == list(range(TOTAL))
    acknowledged_while_down = [a for a in load.answers if times["down"] < a.at < times["restart"]]
    assert len(acknowledged_while_down) >= TOTAL // 4
    assert {status for _, _, status, _ in reads} == {200}, "every read is answered 200 while Redis is down"
    while_down = [cache for at, path, _, cache in reads if "$everything" in path and times["down"] < at < times["restart"]]
    assert while_down and set(while_down) == {"miss"}, "while Redis is down $everything is built from the database"
    assert _held(db_engine, pid) == (TOTAL, TOTAL), "every write exactly once, one version each"
    assert [r.status_code for r in after] == [200, 200]
    assert after[0].json()["total"] == TOTAL + 1, "no view cached before the outage is served after it"
    assert after[1].headers["X-Cache"] == "hit", "the cache fills again once Redis is back"
    engine = database_url.split(":")[0].split("+")[0]
    recovered = min((at for at, path, _, cache in reads if at > times["up"] and cache == "hit"), default=hit_again)
    record(f"Redis killed (SIGKILL) during writes and reads, restarted ({engine})",
           f"SIGKILL of a private redis-server after {TOTAL // 4} writes, restarted on the same AOF after "
           f"{times['restart'] - times['down']:.1f} s of load",
           f"{TOTAL} transactions (conditional PUT) from 3 clients; {len(reads)} reads; "
           f"{len(acknowledged_while_down)} writes and {len(while_down)} $everything while Redis was down",
           f"{_held(db_engine, pid)[0]} Observations, {_held(db_engine, pid)[1]} versions; every answer 200, "
           f"uncached while down; $everything total {after[0].json()['total']}, cached again after",
           recovered - times["up"], f"redis-killed-{engine}")
