"""The database of record killed mid-write and restarted: every acknowledged write is there exactly once; while it
is down the gateway answers 503 OperationOutcome with Retry-After (never a 500), and it recovers by itself.

PostgreSQL runs as a private cluster made by the test (initdb on a free port, socket in its own folder), never
the shared server on 5432, so killing it disturbs no one. initdb refuses to run as root: as root (CI, this
machine) the cluster belongs to the `postgres` user and its commands run through `runuser -u postgres --`.
SQLite runs inside the gateway process: its crash is the gateway SIGKILLed mid-write and started again.
"""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from gateway_setup import api_keys_config
from fault_load import (
    WriteLoad,
    is_transient_outcome,
    patient_bundle,
    session,
)
from live_gateway import REPO, live_gateway, wait_healthy
from net import free_port
from polling import wait_for
from reliability import record
from sqlalchemy import create_engine, text

pytestmark = pytest.mark.faults


def _server_binaries() -> Path:
    """PG_BIN, else the newest Debian PostgreSQL (/usr/lib/postgresql/<major>/bin; .ci/run installs it), else PATH."""
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
                    if p.parent.parent.name.isdigit() else 0)
    if debian:
        return debian[-1].parent
    found = shutil.which("initdb")
    return Path(found).parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _server_binaries()
CLUSTER_USER = "postgres"
TOTAL = 60
DOWN_SECONDS = 1.5


def _as_cluster_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", CLUSTER_USER, "--", *cmd] if os.geteuid() == 0 else cmd


@dataclass
class PrivateCluster:
    folder: Path  # holds data/, the socket and the server log
    port: int

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(_as_cluster_user([str(PG_BIN / "pg_ctl"), "-D", str(self.data), *args]), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)

    def init(self) -> None:
        subprocess.run(_as_cluster_user([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                                         "--no-sync"]), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=120)

    def start(self) -> None:
        # fsync stays on (the default): durability after a kill is what is tested.
        self._pg_ctl("-w", "-t", "60", "-l", str(self.folder / "server.log"), "-o",
                     f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1", "start")

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def kill(self) -> None:
        """SIGKILL the postmaster and every backend: a machine losing power, not a shutdown."""
        master = self.postmaster_pid()
        for pid in [master, *_children(master)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_for(lambda: not Path(f"/proc/{master}").exists(), 10, 0.05, "the postmaster to die")

    def stop(self) -> None:
        try:
            self._pg_ctl("-m", "immediate", "stop")
        except subprocess.CalledProcessError:
            pass  # already down


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@pytest.fixture
def cluster():
    if not (PG_BIN / "initdb").exists():
        pytest.fail(f"the fault suite needs PostgreSQL server binaries in {PG_BIN} (set PG_BIN)", pytrace=False)
    folder = Path(tempfile.mkdtemp(prefix="fault-pg-"))
    if os.geteuid() == 0:
        user = pwd.getpwnam(CLUSTER_USER)
        os.chown(folder, user.pw_uid, user.pw_gid)
    pg = PrivateCluster(folder, free_port())
    pg.init()
    pg.start()
    yield pg
    pg.stop()
    shutil.rmtree(folder, ignore_errors=True)


def _held(url: str, pid: str) -> tuple[int, int, int]:
    """(Observations, their versions, distinct identifiers) of the patient, counted in the database itself."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            resources = conn.execute(text("SELECT count(*) FROM resources WHERE res_type = 'Observation' AND patient_id = :p"),
                                     {"p": pid}).scalar_one()
            versions = conn.execute(text("SELECT count(*) FROM resource_versions WHERE res_type = 'Observation' "
                                         "AND patient_id = :p"), {"p": pid}).scalar_one()
            distinct = conn.execute(text("SELECT count(DISTINCT code) FROM idx_token WHERE res_type = 'Observation' "
                                         "AND param = 'identifier' AND patient_id = :p"), {"p": pid}).scalar_one()
    finally:
        engine.dispose()
    return resources, versions, distinct


def _probe_reads(base: str, pid: str, stop: threading.Event, answers: list) -> None:
    """Reads while writes run: each answers 200, or 503 with Retry-After while the database is down."""
    s = session()
    while not stop.is_set():
        for path in (f"/Patient/{pid}", f"/Observation?subject=Patient/{pid}&_count=5", f"/Patient/{pid}/$everything?_count=5"):
            response = s.get(f"{base}{path}", timeout=30)
            answers.append((path, response.status_code, response.headers.get("Retry-After"),
                            response.json().get("resourceType") if response.content else None))
        time.sleep(0.05)


@pytest.mark.parametrize("injection", ["sigkill", "immediate-stop"])
def test_postgresql_killed_mid_write_loses_no_acknowledged_write_and_the_gateway_recovers(cluster, redis_url, redis_client,
                                                                                         injection):
    pid = "fault-db-p1"
    with live_gateway(redis_url, database_url=cluster.url) as base:
        assert session().post(f"{base}/Bundle", json=patient_bundle(pid)).status_code == 200
        load = WriteLoad(base, pid, TOTAL)
        reads: list = []
        stop_reads = threading.Event()
        times: dict[str, float] = {}

        def chaos() -> None:
            wait_for(lambda: len(load.acknowledged) >= TOTAL // 4, 60, 0.05, "a quarter of the writes")
            times["down"] = time.monotonic()
            cluster.kill() if injection == "sigkill" else cluster.stop()
            time.sleep(DOWN_SECONDS)
            cluster.start()
            times["up"] = time.monotonic()

        threads = [threading.Thread(target=chaos), threading.Thread(target=_probe_reads, args=(base, pid, stop_reads, reads))]
        for thread in threads:
            thread.start()
        load.run()
        threads[0].join()
        stop_reads.set()
        threads[1].join()
        after = session().get(f"{base}/Observation", params={"subject": f"Patient/{pid}", "_count": 1000}).json()

    failures = load.not_ok()
    assert failures, "no write ever failed: the database was not down while the load ran"
    assert [a for a in failures if not is_transient_outcome(a)] == [], "only 503 + Retry-After while the database is down"
    assert {status for _, status, _, _ in reads} <= {200, 503}, "reads answer 200 or 503, never a 500"
    assert all(retry and kind == "OperationOutcome" for _, status, retry, kind in reads if status == 503)
    assert sorted(load.acknowledged) == list(range(TOTAL))
    resources, versions, distinct = _held(cluster.url, pid)
    assert (resources, versions, distinct) == (TOTAL, TOTAL, TOTAL), "every acknowledged write exactly once, one version each"
    assert after["total"] == TOTAL
    first_ok_after = min(a.at for a in load.answers if a.status == 200 and a.at > times["up"])
    how = ("SIGKILL of the postmaster and every backend" if injection == "sigkill" else "pg_ctl stop -m immediate")
    record(f"PostgreSQL {'killed' if injection == 'sigkill' else 'stopped (immediate)'} during writes, restarted",
           f"private cluster: {how} after {TOTAL // 4} writes, restart after {DOWN_SECONDS} s",
           f"{TOTAL} transactions (conditional PUT) from 3 clients, retried on 503; reads probed throughout "
           f"({sum(1 for a in failures if a.status == 503)} write 503s, {sum(1 for r in reads if r[1] == 503)} read 503s, 0 x 500)",
           f"{resources} Observations, {versions} versions, {distinct} distinct identifiers",
           first_ok_after - times["up"], f"postgresql-{injection}")


def test_gateway_answers_503_with_retry_after_while_postgresql_is_down_and_recovers_without_restart(cluster, redis_url,
                                                                                                    redis_client):
    pid = "fault-db-p2"
    with live_gateway(redis_url, database_url=cluster.url) as base:
        s = session()
        assert s.post(f"{base}/Bundle", json=patient_bundle(pid)).status_code == 200
        cluster.kill()
        down = [s.get(f"{base}/Patient/{pid}"), s.post(f"{base}/Bundle", json=patient_bundle(pid)),
                s.get(f"{base}/Patient/{pid}/$everything"), s.get(f"{base}/Observation?subject=Patient/{pid}")]
        cluster.start()
        up = time.monotonic()
        back = wait_for(lambda: (r := s.get(f"{base}/Patient/{pid}")).status_code == 200 and r, 30, 0.05, "the gateway to recover")
        recovered = time.monotonic() - up
    for response in down:
        assert response.status_code == 503, (response.request.method, response.request.url, response.status_code, response.text)
        assert response.headers["Retry-After"].isdigit()
        assert response.json()["resourceType"] == "OperationOutcome"
        assert response.json()["issue"][0]["code"] == "transient"
    assert back.json()["id"] == pid
    record("PostgreSQL down: what clients see", "private cluster SIGKILLed, then restarted; the gateway process is not restarted",
           "read, transaction, $everything and search while down", "503 OperationOutcome (transient) with Retry-After for each; "
           "200 once the database is back", recovered, "postgresql-down-answers")


def _start_gateway(redis_url: str, database_url: str, port: int) -> subprocess.Popen:
    """`python -m service` on a fixed port (live_gateway picks a fresh one): the restart must answer where the
    clients already send."""
    env = {**os.environ, "REDIS_URL": redis_url, "GATEWAY_PORT": str(port), "GATEWAY_API_KEYS": api_keys_config(),
           "GATEWAY_EMBEDDED_STACK": "0", "GATEWAY_RATE_LIMIT": "100000/minute", "GATEWAY_DATABASE_URL": database_url}
    proc = subprocess.Popen([sys.executable, "-m", "service"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    wait_healthy(f"http://127.0.0.1:{port}")
    return proc


def test_sqlite_gateway_killed_mid_write_loses_no_acknowledged_write(redis_url, redis_client, tmp_path):
    """SQLite runs inside the gateway process, so a crash of the database is a crash of the gateway: SIGKILL it
    during writes and start it again on the same file (WAL, synchronous=FULL)."""
    pid, port = "fault-db-p3", free_port()
    url = f"sqlite:///{tmp_path / 'gateway.sqlite3'}"
    base = f"http://127.0.0.1:{port}"
    proc = _start_gateway(redis_url, url, port)
    try:
        assert session().post(f"{base}/Bundle", json=patient_bundle(pid)).status_code == 200
        load = WriteLoad(base, pid, TOTAL)
        times: dict[str, float] = {}
        held_at_kill: list[int] = []

        def chaos() -> None:
            nonlocal proc
            wait_for(lambda: len(load.acknowledged) >= TOTAL // 4, 60, 0.05, "a quarter of the writes")
            proc.kill()
            proc.wait(10)
            times["down"] = time.monotonic()
            held_at_kill.extend(load.acknowledged)
            proc = _start_gateway(redis_url, url, port)
            times["up"] = time.monotonic()

        killer = threading.Thread(target=chaos)
        killer.start()
        load.run()
        killer.join()
    finally:
        proc.kill()
        proc.wait(10)
    assert held_at_kill, "the gateway was not killed during the load"
    assert {a.status for a in load.not_ok()} <= {"connection-error"}, "only lost connections while the process was down"
    assert sorted(load.acknowledged) == list(range(TOTAL))
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar_one() == "ok"
            count, versions = (conn.execute(text(f"SELECT count(*) FROM {table} WHERE res_type = 'Observation' "
                                                 "AND patient_id = :p"), {"p": pid}).scalar_one()
                               for table in ("resources", "resource_versions"))
    finally:
        engine.dispose()
    assert (count, versions) == (TOTAL, TOTAL), "every acknowledged write exactly once, one version each"
    first_ok_after = min(a.at for a in load.answers if a.status == 200 and a.at > times["up"])
    record("Gateway on SQLite (the embedded engine) SIGKILLed during writes, restarted",
           f"SIGKILL of the gateway process after {len(held_at_kill)} acknowledged writes; restarted on the same file",
           f"{TOTAL} transactions (conditional PUT) from 3 clients, retried after lost connections "
           f"({sum(1 for a in load.not_ok())} lost, 0 x 500)",
           f"{count} Observations, {versions} versions; PRAGMA integrity_check ok", first_ok_after - times["up"],
           "sqlite-gateway-sigkill")
