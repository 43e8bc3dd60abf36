"""Narrative extraction: clinical prose in, draft case documents (case format v1) out, every fact with its evidence.

Pure functions over text and the data in `mappings/narrative/`; it never imports the gateway (`service/`).
"""
from __future__ import annotations

from narrative.extract import extract_drafts

__all__ = ["extract_drafts"]
