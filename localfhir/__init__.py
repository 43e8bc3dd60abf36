"""The local FHIR R4 server (sekmet-fhir in its own venv) used as the sync upstream of `python -m service` on
embedded defaults, by the tests and by the benchmarks. Stdlib only, so that any python3 can run it
(`python3 scripts/fhir_server.py ensure-venv` in `.ci/run`, before the project's own venv exists)."""
