"""`python -m service.bulk import DIR`: load a folder of NDJSON (a bulk export) into the store, with a progress bar.

    python -m service.bulk import DIR [--policy strict|lenient] [--results FOLDER] [--database-url URL]

The operator's loader: the same engine as `POST /$import` (store/bulk.py: chunked batch PUTs, deferred
references, idempotent by id), run in this process against GATEWAY_DATABASE_URL (or the SQLite file of the data
folder), with no Redis or worker needed. Per-type output and error NDJSON go to --results; the summary is printed.
Interrupted, it can be run again: re-importing what is already stored changes nothing.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from tqdm import tqdm

from store import bulk, db
from workers.bulk_import import data_dir


def import_folder(folder: Path, engine, policy: str, results: Path) -> dict:
    inputs = [(p.name, p) for p in sorted(folder.glob("*.ndjson")) if p.name != "log.ndjson"]
    state = bulk.new_state(inputs, policy)
    total = sum(i["lines"] for i in state["inputs"])
    with tqdm(total=total, unit="res", desc="import", file=sys.stderr) as bar:
        def advance(current: dict) -> None:
            bar.update(current["done"] - bar.n)
            bar.set_postfix(passes=current["pass"] + 1, errors=sum(current["errors"].values()))

        bulk.ImportRun(engine, results, state, advance).run()
    return state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.bulk", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    load = commands.add_parser("import", help="import every *.ndjson file of DIR")
    load.add_argument("folder", type=Path)
    load.add_argument("--policy", choices=("strict", "lenient"), default=os.environ.get("GATEWAY_REFERENCE_POLICY") or "lenient")
    load.add_argument("--results", type=Path, help="where output.*.ndjson and error.*.ndjson go")
    load.add_argument("--database-url", default=None)
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        parser.error(f"{args.folder} is not a folder")
    engine = db.engine_for(args.database_url or db.default_url())
    results = args.results or data_dir() / "cli" / time.strftime("%Y%m%dT%H%M%S")
    state = import_folder(args.folder, engine, args.policy, results)
    for rtype, count in sorted(state["counts"].items()):
        print(f"{rtype}\t{count}")
    errors = sum(state["errors"].values())
    print(f"imported {sum(state['counts'].values())}, errors {errors}; results in {results}")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
