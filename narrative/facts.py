"""Sentence by sentence: which case fact each mention makes, or which known fact it adds to."""
from __future__ import annotations

import re

from narrative import quantities, timeexpr
from narrative.assemble import (
    CONDITION_ROLES,
    IHC_CUE,
    NEW_CUE,
    ROUTES,
    STOP_CUE,
    Assembler,
    Draft,
)
from narrative.mentions import Mention, Sentence

LINE_SECTIONS = ("procedures", "medications")


class CaseReader(Assembler):
    def read(self, sentences: list[Sentence], mentions: list[Mention]) -> Draft:
        for sentence in sentences:
            here = sorted((m for m in mentions if m.sentence is sentence), key=lambda m: m.start)
            self.sentence(sentence, here)
        self.finish()
        return Draft(self.case, self.evidence, self.mentions)

    def sentence(self, sentence: Sentence, here: list[Mention]) -> None:
        self.sentence_new = set()
        self.sentence_mentions = here
        times = timeexpr.find(sentence.text)
        self.demographics(sentence)
        handled: set[int] = set()
        # Outcomes last: the treatment a sentence credits may be named after the outcome ("… with octreotide").
        # Medications after the procedures of their sentence: a regimen "given in combination with" an
        # embolization starts with it.
        self.route_stops(sentence, here, times)
        for mention in sorted(here, key=lambda m: (m.category == "outcome", m.category == "medication")):
            if id(mention) in handled:
                continue
            handler = getattr(self, "on_" + mention.category.replace("-", "_"), None)
            fact_id = handler(mention, sentence, here, times, handled) if handler else None
            self.listed(mention, fact_id)
        self.sentence_refs = set()

    def route_stops(self, sentence: Sentence, here: list[Mention], times) -> None:
        """'intravenous perfusions could be interrupted': the end of every running regimen given that way."""
        stop = STOP_CUE.search(sentence.text)
        if not stop:
            return
        window = sentence.text[max(0, stop.start() - 45):stop.start()].lower()
        for word, route in ROUTES.items():
            if word not in window:
                continue
            for fact in self.case.get("medications", []):
                if fact.get("_route") == route and "end" not in fact and "duration" not in fact \
                        and fact["id"] not in self.sentence_new:
                    fact["end"] = self.event_time(sentence, times)
                    fact["status"] = "completed"
                    self.cite_times(fact["id"], sentence, times)

    # ---- patient ----------------------------------------------------------------------------------------
    def demographics(self, sentence: Sentence) -> None:
        patient = self.case["patient"]
        age = quantities.AGE.search(sentence.text)
        if age and "ageAtPresentation" not in patient:
            patient["ageAtPresentation"] = {"value": int(age.group(1)), "unit": "a"}
            self.cite_span("patient", sentence, age.start(), age.end(), "age", "quantities.py AGE",
                           type="age", value=int(age.group(1)), assertion="present")
        if patient["sex"] == "unknown":
            for pattern, sex in ((quantities.FEMALE, "female"), (quantities.MALE, "male")):
                found = pattern.search(sentence.text)
                if found:
                    patient["sex"] = sex
                    self.cite_span("patient", sentence, found.start(), found.end(), "sex", "quantities.py SEX",
                                   type="sex", value=sex, assertion="present")
                    break

    def on_death(self, mention: Mention, sentence: Sentence, here, times, handled) -> str | None:
        if mention.assertion != "present":
            return None
        death: dict = {"time": self.event_time(sentence, times), "text": sentence.text.strip()}
        response = next((m for m in here if m.category == "outcome" and m.start > mention.start), None)
        if response:
            handled.add(id(response))
            death["diseaseStatusAtDeath"] = response.text
            self.listed(response, "death")
        self.case["patient"]["death"] = death
        self.cite("death", mention)
        self.cite_times("death", sentence, times)
        return "death"

    # ---- conditions -------------------------------------------------------------------------------------
    def on_primary_tumour(self, mention: Mention, sentence: Sentence, here, times, handled) -> str | None:
        if mention.assertion != "present":
            return None
        existing = self.latest("conditions", lambda f: f["role"] == "primary-tumour")
        if existing:
            self.cite(existing["id"], mention)
            return existing["id"]
        attrs = mention.attributes
        fact: dict = {"role": "primary-tumour", "concept": mention.key, "text": mention.text,
                      "onset": {"at": "presentation"}}
        if attrs.get("site"):
            fact["site"] = {"concept": attrs["site"], "text": attrs["site"].capitalize()}
        if attrs.get("histology"):
            fact["histology"] = attrs["histology"]
        syndrome = next((m for m in here if m.category in ("symptom", "syndrome") and m.start < mention.start), None)
        if syndrome:
            fact["functionalSyndrome"] = {k: v for k, v in (("concept", syndrome.key), ("text", syndrome.text)) if v}
        made = self.add("conditions", "primary-tumour", _clean(fact), mention, event=False)
        if syndrome:
            self.cite(made["id"], syndrome, role="functional-syndrome")
        return made["id"]

    def on_metastasis(self, mention: Mention, sentence: Sentence, here, times, handled) -> str | None:
        if mention.assertion != "present":
            return None
        found = quantities.segments(sentence.text)
        attrs = mention.attributes
        site: dict = ({"concept": attrs["site"], "text": attrs["site"].capitalize()} if attrs.get("site")
                      else {"text": attrs.get("site_text", mention.text)})
        if found:
            site["segments"] = found[0].value["segments"]
            site["text"] = "Liver segments " + ", ".join(site["segments"])
        primary = self.latest("conditions", lambda f: f["role"] == "primary-tumour")
        treated = [f for f in self.case.get("procedures", []) if f["id"] in self.sentence_new
                   and f.get("status") != "not-done"]
        if treated:  # "liver surgery for resection of isolated liver metastases": present until removed
            onset: dict = {"before": treated[0]["id"], "text": "before its resection"}
        elif self.last_event is None and primary:
            onset = {"at": "presentation"}
        else:
            onset = self.event_time(sentence, times, mention=mention)
        fact = {"role": "metastasis", "concept": mention.key, "text": mention.text, "site": site,
                "primary": primary["id"] if primary else None, "onset": onset}
        # A metastasis known only as "before its resection" dates nothing after it.
        made = self.add("conditions", "liver-metastases" if attrs.get("site") == "liver" else "metastasis", _clean(fact), mention,
                        event=self.last_event is not None and not treated)
        self.cite_times(made["id"], sentence, times)
        if found:
            self.cite_span(made["id"], sentence, found[0].start, found[0].end, "segments", "quantities.py SEGMENTS")
        for procedure in treated:
            procedure["target"] = [made["id"]]
        if mention.attributes.get("new") and self.last_event is not None:
            self.progression(made, mention, sentence)
        return made["id"]

    def progression(self, lesion: dict, mention: Mention, sentence: Sentence) -> None:
        treatment = self.latest_treatment(antitumour=True)
        if treatment is None:
            return
        lesion["onset"] = {"after": treatment["id"], "edge": "start"}
        courses = re.search(r"\b(\w+) courses\b", sentence.text)
        if courses and self.kinds[treatment["id"]] == "medications" and courses.group(1).lower() in quantities.WORD_NUMBERS:
            treatment["courses"] = int(quantities.number(courses.group(1)))
        if self.kinds[treatment["id"]] == "medications" and "end" not in treatment and "duration" not in treatment:
            treatment["end"] = {"at": lesion["id"]}
            treatment["status"] = "stopped"
            treatment["statusReason"] = {"concept": "no-response", "text": mention.text}
        outcome = self.add("outcomes", "progression", {
            "kind": "radiological-response", "value": "progression", "treatments": [treatment["id"]],
            "focus": lesion["id"], "method": "imaging", "time": {"after": treatment["id"], "edge": "start"},
            "text": mention.text}, mention, event=False)
        self.mentions.append({**self.mention_record(mention), "type": "outcome", "key": None, "fact": outcome["id"]})
        self.last_event = lesion["id"]

    def on_symptom(self, mention: Mention, sentence: Sentence, here, times, handled) -> str | None:
        return self.condition(mention, sentence, times, CONDITION_ROLES[mention.category])

    on_syndrome = on_symptom

    def on_complication(self, mention: Mention, sentence: Sentence, here, times, handled) -> str | None:
        return self.condition(mention, sentence, times, "complication")

    def on_critical_event(self, mention: Mention, sentence: Sentence, here, times, handled) -> str | None:
        return self.condition(mention, sentence, times, "critical-event")

    def condition(self, mention: Mention, sentence: Sentence, times, role: str) -> str | None:
        if mention.assertion not in ("present", "historical"):
            return None
        if mention.assertion == "historical":
            onset: dict = {"before": "presentation", "text": "history before presentation"}
        elif self.last_event is None:
            onset = {"at": "presentation"}
        else:
            same = next((f for f in self.case.get("conditions", []) if f["id"] in self.sentence_new
                         and f["role"] in ("symptom", "syndrome", "critical-event")), None)
            onset = {"at": same["id"]} if same and role != "complication" else self.event_time(
                sentence, times, mention=mention)
        fact: dict = {"role": role, "concept": mention.key, "text": mention.text, "onset": onset}
        lowered = sentence.text.lower()
        for severity in ("severe", "moderate", "mild"):
            if severity in lowered[max(0, mention.clean_start - sentence.start - 40):
                                   mention.clean_start - sentence.start + 1]:
                fact["severity"] = severity
                break
        if "transient" in lowered[max(0, mention.clean_start - sentence.start - 30):mention.clean_start - sentence.start]:
            fact["transient"] = True
        if mention.attributes.get("laterality"):
            fact["laterality"] = mention.attributes["laterality"]
        if role == "complication":
            cause = self.complication_cause(mention, sentence)
            if cause:
                fact["dueTo"] = cause
        made = self.add("conditions", mention.key or role, _clean(fact), mention,
                        event=role in ("symptom", "syndrome", "critical-event") and mention.assertion == "present")
        self.cite_times(made["id"], sentence, times)
        return made["id"]

    def complication_cause(self, mention: Mention, sentence: Sentence) -> str | None:
        if mention.attributes.get("due_to"):
            return self.named_anchor(mention.attributes["due_to"])
        for expression in timeexpr.find(sentence.text):
            if expression.anchor_word:
                return self.named_anchor(expression.anchor_word)
        in_sentence = [f for f in self.case.get("procedures", []) if f["id"] in self.sentence_new
                       or f["id"] in self.sentence_refs]
        return in_sentence[-1]["id"] if in_sentence else None

    # ---- observations -----------------------------------------------------------------------------------
    def on_ihc(self, mention: Mention, sentence: Sentence, here, times, handled) -> str | None:
        if not IHC_CUE.search(sentence.text):
            return None
        lowered = sentence.text.lower()
        result = "negative" if "negativ" in lowered else "positive" if "positiv" in lowered else None
        if result is None:
            return None
        specimen = self.latest("procedures", lambda f: f.get("status") != "not-done")
        fact = {"kind": "immunohistochemistry", "concept": mention.key,
                "text": f"{mention.text} immunohistochemistry", "result": result,
                "specimenFrom": specimen["id"] if specimen else None,
                "time": {"at": specimen["id"]} if specimen else {"at": "presentation"}}
        return self.add("observations", f"ihc-{mention.key or mention.text}", _clean(fact), mention,
                        event=False)["id"]

    def on_proliferation_index(self, mention: Mention, sentence: Sentence, here, times, handled) -> str | None:
        specimen = self.latest("procedures", lambda f: f.get("status") != "not-done")
        fact: dict = {"kind": "proliferation-index", "concept": mention.key, "text": f"{mention.text} proliferation index",
                      "specimenFrom": specimen["id"] if specimen else None,
                      "time": {"at": specimen["id"]} if specimen else {"at": "presentation"}}
        if mention.assertion == "not-available":
            fact["absent"] = {"reason": "unknown", "text": f"{mention.text} data not available"}
        else:
            value = next((v for v in quantities.values(sentence.text) if v.value["unit"] == "%"), None)
            if value is None:
                return None
            fact["value"] = {"value": value.value["value"], "unit": "%"}
        made = self.add("observations", "ki67", _clean(fact), mention, event=False)
        return made["id"]

    def on_lab(self, mention: Mention, sentence: Sentence, here, times, handled) -> str | None:
        labs = [m for m in here if m.category == "lab"]
        found = [v for v in quantities.values(sentence.text) if v.start > mention.clean_start - sentence.start]
        if "respectively" in sentence.text:
            found = quantities.values(sentence.text)
            index = labs.index(mention)
            value = found[index] if index < len(found) else None
        else:
            value = found[0] if found else None
        attrs = mention.attributes
        fact: dict = {"kind": attrs.get("kind", "laboratory"), "concept": mention.key, "text": attrs.get("analyte", mention.text)}
        lowered = sentence.text.lower()
        if value is None:
            return None
        fact["value"] = {"value": value.value["value"], "unit": value.value["unit"]}
        arbitrary = quantities.arbitrary_unit(f"{mention.text} {attrs.get('analyte', '')}", value.value["unit"])
        if arbitrary:
            fact["value"]["unitCoded"] = False
        if "elevated" in lowered or "high" in lowered:
            fact["interpretation"] = "high"
        treatment = self.latest_treatment(antitumour=True) if "dropped" in lowered else None
        if treatment is not None:
            fact["time"] = {"before": treatment["id"], "text": "before the drop"}
        else:
            same = next((f for f in self.case.get("conditions", []) if f["id"] in self.sentence_new), None)
            fact["time"] = ({"at": same["id"]} if same else {"at": self.last_event} if self.last_event
                            else {"at": "presentation"})
        if value.value["unit"] != value.value["reported"]:
            fact["note"] = f"Reported as '{value.value['reported']}'."
        made = self.add("observations", f"{mention.key or mention.text}", _clean(fact), mention, event=False)
        self.cite_span(made["id"], sentence, value.start, value.end, "value", "quantities.py VALUE",
                       value=fact["value"], ucum=None if arbitrary else quantities.ucum_code(fact["value"]["unit"]))
        return made["id"]

    # ---- procedures -------------------------------------------------------------------------------------
    def on_procedure(self, mention: Mention, sentence: Sentence, here, times, handled) -> str | None:
        if mention.assertion not in ("present", "not-done"):
            return None
        rel = mention.clean_start - sentence.start
        if any(t.start <= rel < t.end for t in times):
            return None  # "11 months after SIRT": an anchor, not a new procedure
        same_sentence = [m for m in here if m.category == "procedure" and m is not mention and m.key
                         and m.assertion == mention.assertion]
        if mention.key is None and same_sentence:
            return None  # "liver surgery for resection of …": the generic word names the same act
        existing = self.latest("procedures", lambda f: f.get("concept") == mention.key and mention.key is not None)
        if mention.assertion == "not-done":
            existing = existing if existing and existing.get("status") == "not-done" else None
        fresh = existing is None or bool(NEW_CUE.search(sentence.text[:rel])) or (
            existing.get("status") == "not-done") != (mention.assertion == "not-done")
        if not fresh and existing is not None:
            self.cite(existing["id"], mention)
            self.sentence_refs = self.sentence_refs | {existing["id"]}
            self.procedure_details(existing, mention, sentence)
            return existing["id"]
        return self.new_procedure(mention, sentence, times)

    def new_procedure(self, mention: Mention, sentence: Sentence, times) -> str:
        respectively = next((t for t in times if t.kind == "respectively"), None)
        segments = quantities.segments(sentence.text)
        parts = len(respectively.offsets) if respectively and segments and len(segments[0].value["segments"]) == len(
            respectively.offsets) else 1
        made_id = ""
        anchor = self.last_event  # "2 and 5 years later, respectively": both after the same event
        for index in range(parts):
            self.last_event = anchor
            fact: dict = {"concept": mention.key, "text": mention.text, "time": self.event_time(sentence, times, index)}
            if mention.assertion == "not-done":
                fact["status"] = "not-done"
                reason = _reason(sentence.text)
                if reason:
                    fact["statusReason"] = {"text": reason}
            if mention.attributes.get("intent"):
                fact["intent"] = mention.attributes["intent"]
            site: dict = {}
            if mention.attributes.get("site"):
                site = {"concept": mention.attributes["site"],
                        "text": mention.attributes.get("site_text", mention.attributes["site"].capitalize())}
            if segments:
                chosen = segments[0].value["segments"]
                site["segments"] = [chosen[index]] if parts > 1 else chosen
                site["text"] = "Liver segment " + ", ".join(site["segments"])
            if site:
                fact["site"] = [site]
            count = quantities.count_before(sentence.text, mention.clean_start - sentence.start)
            if count and mention.attributes.get("class") == "tae":
                fact["sessions"] = count
            metastasis = self.latest("conditions", lambda f: f["role"] == "metastasis")
            if metastasis and mention.attributes.get("site") == "liver":
                fact["target"] = [metastasis["id"]]
            made = self.add("procedures", mention.key or mention.text, _clean(fact), mention)
            if mention.assertion == "not-done" and fact.get("statusReason"):
                start = sentence.text.find(fact["statusReason"]["text"])
                self.cite_span(made["id"], sentence, start, start + len(fact["statusReason"]["text"]), "status-reason",
                               "context_rules.json NOT_DONE reason")
            self.cite_times(made["id"], sentence, times)
            self.procedure_details(made, mention, sentence)
            made_id = made["id"]
        return made_id

    def procedure_details(self, fact: dict, mention: Mention, sentence: Sentence) -> None:
        if mention.attributes.get("class") != "tae" or fact.get("particles"):
            return
        material = {"text": "Polyvinyl alcohol particles (PVA)"} if ("PVA" in sentence.text or
                                                                     "polyvinyl" in sentence.text.lower()) else None
        for found in quantities.particles(sentence.text):
            if material:
                fact.setdefault("particles", []).append({"material": material, **found.value})
                self.cite_span(fact["id"], sentence, found.start, found.end, "particles", "quantities.py PARTICLES",
                               value=found.value)

    def on_site(self, mention: Mention, sentence: Sentence, here, times, handled) -> str | None:
        target = next((f for f in reversed(self.case.get("procedures", []))
                       if f["id"] in self.sentence_new or f["id"] in self.sentence_refs), None)
        target = target or self.latest("procedures")
        if target is None:
            return None
        site = {"concept": mention.key, "text": mention.text[:1].upper() + mention.text[1:]}
        for name in ("artery", "lobe"):
            if mention.attributes.get(name):
                site[name] = mention.attributes[name]
        target["site"] = [site]
        self.cite(target["id"], mention, role="site")
        return target["id"]

    def on_medication(self, mention: Mention, sentence: Sentence, here, times, handled) -> str | None:
        from narrative.medications import medication_mention
        return medication_mention(self, mention, sentence, here, times, handled)

    def on_outcome(self, mention: Mention, sentence: Sentence, here, times, handled) -> str | None:
        from narrative.outcomes import outcome_mention
        return outcome_mention(self, mention, sentence, here, times)

    def latest_treatment(self, antitumour: bool = False, before: set[str] | None = None) -> dict | None:
        exclude = before or set()
        ordered = [f for f in self.order if f["id"] not in exclude]
        for fact in reversed(ordered):
            section = self.kinds[fact["id"]]
            if fact.get("status") == "not-done" or fact.get("concept") == "icu-admission" \
                    or fact.get("intent") == "supportive":
                continue
            if section == "medications" and antitumour and fact.get("_ssa"):
                continue
            return fact
        return None

    @property
    def order(self) -> list[dict]:
        return [self.facts[i] for i in self.facts if self.kinds[i] in LINE_SECTIONS]

    def finish(self) -> None:
        for fact in self.case.get("medications", []):
            fact.pop("_ssa", None)
            fact.pop("_route", None)
            fact.setdefault("status", "completed" if ("end" in fact or "duration" in fact) else "active")


def _reason(text: str) -> str | None:
    import re
    m = re.search(r"\b(due to [^.;]+|because [^.;]+)", text)
    return m.group(1).strip() if m else None


def _clean(fact: dict) -> dict:
    return {k: v for k, v in fact.items() if v is not None and v != [] and v != {}}


__all__ = ["CaseReader"]
