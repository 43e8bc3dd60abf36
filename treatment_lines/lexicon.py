"""The drug lexicon (mappings/drugs/agents.csv, products.csv): a medication concept as the agents it contains.

Recognition goes by ingredient: an RxNorm ingredient code, an RxNorm clinical or branded drug code (through its
ingredients), or the agent's name, synonym or brand written as whole words in the text or a coding's display
('CARBOplatin', 'Sandostatin LAR', 'Cisplatin 50 MG Injection', 'carboplatin/paclitaxel'). Nothing is guessed:
a concept none of these name is unknown.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DRUG_DIR = Path(__file__).resolve().parent.parent / "mappings" / "drugs"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


@dataclass(frozen=True)
class Agent:
    key: str
    cls: str
    codes: tuple[str, ...]


@dataclass(frozen=True)
class Recognised:
    agents: tuple[str, ...]   # lexicon keys, sorted
    how: str                  # ingredient-code | product-code | text


class Lexicon:
    def __init__(self, agents_csv: Path, products_csv: Path):
        self.agents: dict[str, Agent] = {}
        self._by_code: dict[str, tuple[str, ...]] = {}
        names: dict[str, str] = {}
        with agents_csv.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                codes = tuple(c for c in row["rxnorm"].split(";") if c)
                self.agents[row["agent"]] = Agent(row["agent"], row["class"], codes)
                for code in codes:
                    self._by_code[code] = (row["agent"],)
                for name in [row["agent"], *row["names"].split(";"), *row["brands"].split(";")]:
                    if name.strip():
                        names.setdefault(name.strip().lower(), row["agent"])
        with products_csv.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                self._by_code.setdefault(row["code"], tuple(sorted(a for a in row["agents"].split(";") if a)))
        self._names = names
        self._action = _depot_table(agents_csv.parent / "depots.csv")
        depot_names = sorted((n for kind, n in self._action if kind == "name"), key=len, reverse=True)
        self._depot_pattern = re.compile(rf"(?<![\w-])(?:{'|'.join(re.escape(n) for n in depot_names)})(?![\w-])") \
            if depot_names else None
        # Longest names first, so that 'sandostatin lar' wins over 'sandostatin' and 'nab-paclitaxel' over 'paclitaxel'.
        alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
        self._pattern = re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])")

    def by_code(self, system: str | None, code: str | None) -> tuple[str, ...]:
        if system != RXNORM or not code:
            return ()
        return self._by_code.get(code, ())

    def by_text(self, text: str | None) -> tuple[str, ...]:
        if not text:
            return ()
        found = {self._names[m.group(0)] for m in self._pattern.finditer(text.lower())}
        return tuple(sorted(found))

    def recognise(self, concept: dict | None) -> Recognised | None:
        """The agents a CodeableConcept names: by code first, then by the words of its text and displays."""
        concept = concept or {}
        codings = concept.get("coding") or []
        for how in ("ingredient-code", "product-code"):
            found = set()
            for coding in codings:
                agents = self.by_code(coding.get("system"), coding.get("code"))
                if agents and (len(agents) == 1 and coding.get("code") in self.agents[agents[0]].codes) == (how == "ingredient-code"):
                    found |= set(agents)
            if found:
                return Recognised(tuple(sorted(found)), how)
        for text in [concept.get("text"), *(c.get("display") for c in codings)]:
            agents = self.by_text(text)
            if agents:
                return Recognised(agents, "text")
        return None

    def cls(self, agent: str) -> str:
        return self.agents[agent].cls

    def action_days(self, concept: dict | None, agents: tuple[str, ...]) -> float | None:
        """How long one dose of a long-acting depot acts (mappings/drugs/depots.csv, from the product labels): by
        product code, then by a depot name in the text, then for an agent every form of which is a depot.
        None for anything else (an immediate-release injection, an unknown strength: nothing is guessed)."""
        concept = concept or {}
        codings = concept.get("coding") or []
        for coding in codings:
            if coding.get("system") == RXNORM and ("product", coding.get("code")) in self._action:
                return self._action[("product", coding.get("code"))]
        for text in [concept.get("text"), *(c.get("display") for c in codings)]:
            found = self._depot_pattern.search(text.lower()) if text and self._depot_pattern else None
            if found:
                return self._action[("name", found.group(0))]
        if len(agents) == 1:
            return self._action.get(("agent", agents[0]))
        return None


def _depot_table(path: Path) -> dict[tuple[str, str], float]:
    """(match, value) -> days of action; match is product (RxNorm code), name (lower-case words) or agent."""
    if not path.exists():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        return {(row["match"], row["value"].lower() if row["match"] == "name" else row["value"]): float(row["action_days"])
                for row in csv.DictReader(handle)}


@lru_cache(maxsize=2)
def load_lexicon(folder: str = str(DRUG_DIR)) -> Lexicon:
    return Lexicon(Path(folder) / "agents.csv", Path(folder) / "products.csv")
