"""Rebuild agents.csv codes and products.csv from RxNorm-derived JSON (not run by the service or the tests).

Source: github.com/davidanderson3/rxnorm-ingredients, commit a8fcf13, web/data/<letter>.json: RxNorm RRF
(RXNCONSO/RXNREL) ingredients (TTY IN/PIN/MIN) with their SCDC -> SCD -> SBD -> BN tree. Its A.json is absent
from the public snapshot, so agents starting with 'a' keep an empty code and are recognised by name only.

Run: python mappings/drugs/build_tables.py <dir with the <letter>.json files> (edits the two CSVs in place).
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

HERE = Path(__file__).parent
SOURCE = "davidanderson3/rxnorm-ingredients: web/data/{letter}.json @a8fcf13 (RxNorm RRF-derived; TTY={tty})"
# Topical, ophthalmic and other local forms are not systemic anticancer therapy (Efudex cream, Viroptic drops).
LOCAL_FORMS = ("Topical", "Ophthalmic", "Otic", "Cream", "Ointment", "Vaginal", "Rectal", "Intravesical", "Nasal",
               "Inhalant", "Irrigation", "Dental", "Transdermal", "Paste", "Lotion", "Gel", "Shampoo", "Foam",
               "Medicated Pad", "Pyelocalyceal")
# Lexicon rows whose ingredient concepts carry another name in RxNorm.
INGREDIENT_NAMES = {"insulin": ["insulin, regular, human", "insulin glargine", "insulin lispro", "insulin aspart, human"],
                    "radium Ra 223 dichloride": ["radium chloride Ra-223"]}


def _load(folder: Path, name: str) -> tuple[dict | None, str]:
    letter = name[0].upper()
    path = folder / f"{letter}.json"
    if not path.exists() or path.stat().st_size == 0:
        return None, letter
    for concept in json.loads(path.read_text(encoding="utf-8")):
        if concept["Name"].lower() == name.lower():
            return concept, letter
    return None, letter


def main(folder: Path) -> None:
    with (HERE / "agents.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    products: dict[str, dict] = {}
    for row in rows:
        codes, sources = [], []
        for name in INGREDIENT_NAMES.get(row["agent"], [row["agent"]]):
            concept, letter = _load(folder, name)
            if concept is None:
                continue
            codes.append(concept["RXCUI"])
            sources.append(SOURCE.format(letter=letter, tty=concept["TTY"]))
            for component in concept.get("SCDCs", []):
                for scd in component.get("SCDs", []):
                    drugs = [(scd["RXCUI"], scd["Name"], "SCD")] + [(b["RXCUI"], b["Name"], "SBD") for b in scd.get("SBDs", [])]
                    for code, display, tty in drugs:
                        if any(form in display for form in LOCAL_FORMS):
                            continue
                        entry = products.setdefault(code, {"code": code, "display": display, "tty": tty, "agents": [],
                                                           "source": SOURCE.format(letter=letter, tty=tty)})
                        if row["agent"] not in entry["agents"]:
                            entry["agents"].append(row["agent"])
        if codes:
            row["rxnorm"], row["source"] = ";".join(codes), " ; ".join(dict.fromkeys(sources))
    with (HERE / "agents.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    with (HERE / "products.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["code", "tty", "display", "agents", "source"], lineterminator="\n")
        writer.writeheader()
        for entry in sorted(products.values(), key=lambda e: int(e["code"])):
            writer.writerow(entry | {"agents": ";".join(entry["agents"])})


if __name__ == "__main__":
    main(Path(sys.argv[1]))
