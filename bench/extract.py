"""Narrative extraction benchmark: precision, recall and F1 per fact type, and time per 1,000 characters.

    .venv/bin/python bench/extract.py [FOLDER ...]      (default: tests/data)

Every `NAME.txt` under a folder with a `NAME.gold.json` beside it is scored (see docs/extraction.md for the
gold format); a gold file may instead name its text with `"text": "other.txt"` and the draft it grades with
`"draft": "Case 2"`. New annotated texts need no code."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from narrative import extract_drafts
from narrative.scoring import predicted_units, score


def gold_files(folders: list[Path]) -> list[Path]:
    found = []
    for folder in folders:
        found.extend(sorted(folder.rglob("*.gold.json")))
        found.extend(t.with_suffix(".gold.json") for t in sorted(folder.rglob("*.txt"))
                     if t.with_suffix(".gold.json").exists() and t.with_suffix(".gold.json") not in found)
    return list(dict.fromkeys(found))


def grade(gold_path: Path) -> tuple[dict, int, float]:
    gold = json.loads(gold_path.read_text(encoding="utf-8"))
    text_path = gold_path.parent / gold.get("text", gold_path.name.replace(".gold.json", ".txt"))
    text = text_path.read_text(encoding="utf-8")
    started = time.perf_counter()
    drafts = extract_drafts(text)
    elapsed = time.perf_counter() - started
    wanted = gold.get("draft")
    chosen = [d for d in drafts if wanted is None or d["label"] == wanted]
    units = [u for d in chosen for u in predicted_units(d)]
    return score(gold["facts"], units), len(text), elapsed


def main(argv: list[str]) -> int:
    folders = [Path(a) for a in argv] or [Path(__file__).resolve().parent.parent / "tests" / "data"]
    totals: dict[str, dict[str, int]] = {}
    characters, seconds = 0, 0.0
    extract_drafts("Warm-up.")  # builds the pipelines once, so the timings below are per text
    for path in gold_files(folders):
        result, length, elapsed = grade(path)
        characters, seconds = characters + length, seconds + elapsed
        print(f"{path}: {length} characters, {elapsed * 1000:.0f} ms")
        for fact in result["missed"]:
            print(f"  missed   {fact['type']:<20} {fact['assertion']:<14} {fact['text']!r}")
        for unit in result["spurious"]:
            print(f"  spurious {unit['type']:<20} {unit['assertion']:<14} {unit['text']!r}")
        for kind, row in result["types"].items():
            total = totals.setdefault(kind, {"tp": 0, "fp": 0, "fn": 0})
            for name in ("tp", "fp", "fn"):
                total[name] += row[name]
    print(f"\n{'fact type':<22}{'P':>7}{'R':>7}{'F1':>7}{'tp':>5}{'fp':>5}{'fn':>5}")
    for kind, t in sorted(totals.items()):
        p = t["tp"] / (t["tp"] + t["fp"]) if t["tp"] + t["fp"] else 1.0
        r = t["tp"] / (t["tp"] + t["fn"]) if t["tp"] + t["fn"] else 1.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        print(f"{kind:<22}{p:>7.3f}{r:>7.3f}{f:>7.3f}{t['tp']:>5}{t['fp']:>5}{t['fn']:>5}")
    all_tp = sum(t["tp"] for t in totals.values())
    all_fp = sum(t["fp"] for t in totals.values())
    all_fn = sum(t["fn"] for t in totals.values())
    print(f"{'all':<22}{all_tp / max(1, all_tp + all_fp):>7.3f}{all_tp / max(1, all_tp + all_fn):>7.3f}")
    if characters:
        print(f"\ntime per 1,000 characters: {seconds / characters * 1000 * 1000:.1f} ms "
              f"({characters} characters, {seconds:.2f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
