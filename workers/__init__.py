"""RQ jobs: plain module-level functions, importable by dotted path.

Sync with hospital FHIR servers (docs/sync.md): `jobs.push` / `jobs.pull` on the `sync` queue (`queues.py`),
one HTTP client (`fhir_client.py`), upstreams from the environment (`upstreams.py`), and `python -m workers`
to run a worker that also re-runs jobs abandoned by dead workers (`sweep.py`).
"""
