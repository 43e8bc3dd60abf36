"""workers/queues.py enqueue_summaries puts one recomputation job per patient on the summaries queue in one Redis
round trip (enqueue_many): the same jobs, options and queue registration as one enqueue per patient gave."""
from __future__ import annotations

import pytest
import redis
from rq import Queue, Retry
from rq.job import Job

from workers.queues import SUMMARIES_QUEUE, enqueue_summaries, summaries_queue
from workers.summaries import compute_treatment_lines

# What differs between any two jobs: their ids and instants.
PER_JOB = {"created_at", "enqueued_at", "last_heartbeat", "started_at", "ended_at"}


def _stored(client: redis.Redis, job_id: str) -> dict:
    fields = {k.decode(): v for k, v in client.hgetall(Job.key_for(job_id)).items()}
    return {k: v for k, v in fields.items() if k not in PER_JOB}


def test_one_job_per_patient_in_sorted_order_with_the_options_of_one_enqueue_each(redis_client):
    enqueue_summaries(redis_client, {"p-b", "p-a", "p-c"}, True, "req-7")
    queue = Queue(SUMMARIES_QUEUE, connection=redis_client)
    jobs = [Job.fetch(job_id, connection=redis_client) for job_id in queue.job_ids]
    assert [j.args for j in jobs] == [("p-a",), ("p-b",), ("p-c",)]
    assert all(j.func is compute_treatment_lines and j.get_status() == "queued" and j.meta == {"request_id": "req-7"}
               and j.result_ttl == 3600 and j.failure_ttl == 86400 and j.retries_left == 3 and j.retry_intervals == [1, 5, 30]
               for j in jobs)
    assert queue.key.encode() in redis_client.smembers(Queue.redis_queues_keys)
    # Field by field what the enqueue per patient stored (before enqueue_many), ids and instants aside.
    single = summaries_queue(redis_client).enqueue(compute_treatment_lines, "p-a", result_ttl=3600, failure_ttl=86400,
                                                   retry=Retry(max=3, interval=[1, 5, 30]), meta={"request_id": "req-7"})
    assert _stored(redis_client, jobs[0].id) == _stored(redis_client, single.id)


def test_no_request_id_no_meta(redis_client):
    enqueue_summaries(redis_client, {"p-a"})
    (job_id,) = Queue(SUMMARIES_QUEUE, connection=redis_client).job_ids
    assert Job.fetch(job_id, connection=redis_client).meta == {}


def test_redis_down_raises_a_redis_error_the_after_write_hook_catches():
    down = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    with pytest.raises(redis.RedisError):
        enqueue_summaries(down, {"p-a"}, True, "req-7")
