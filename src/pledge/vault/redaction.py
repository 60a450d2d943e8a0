"""Finding and masking personal data inside free text people submit (comments, questions).

Presidio's pattern recognizers do the finding: e-mail addresses, phone numbers, payment card
numbers, URLs, and US street addresses (a pattern of ours; Presidio has none). No language
model is downloaded: the NLP engine is a blank spaCy English pipeline written to a temporary
folder, and the public-suffix list comes from tldextract's bundled snapshot, so scanning
never touches the network.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import spacy
import tldextract
from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry
from presidio_analyzer.nlp_engine import NlpEngineProvider
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    EmailRecognizer,
    PhoneRecognizer,
    UrlRecognizer,
)

MASKS = {
    "EMAIL_ADDRESS": "[email]",
    "PHONE_NUMBER": "[phone]",
    "CREDIT_CARD": "[card number]",
    "URL": "[link]",
    "STREET_ADDRESS": "[street address]",
}
"""What each kind of finding is replaced with in the redacted copy."""

KIND_NAMES = {
    "EMAIL_ADDRESS": "an e-mail address",
    "PHONE_NUMBER": "a phone number",
    "CREDIT_CARD": "a card number",
    "URL": "a link",
    "STREET_ADDRESS": "a street address",
}
"""Each kind of finding in words, for a refusal."""

_STREET_SUFFIXES = (
    "St|Street|Ave|Avenue|Blvd|Boulevard|Rd|Road|Dr|Drive|Ln|Lane|Way|Ct|Court|Pl|Place|"
    "Ter|Terrace|Pkwy|Parkway|Hwy|Highway|Cir|Circle|Sq|Square|Trl|Trail"
)
STREET_ADDRESS = (
    rf"\b\d{{1,6}}\s+(?:[A-Z0-9][\w.'-]*\s+){{1,5}}(?:{_STREET_SUFFIXES})\b\.?"
    r"(?:,?\s+(?:Apt|Suite|Ste|Unit|Fl|FL|Floor|#)\.?\s*\w+)?"
)

_offline_suffixes = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


class _OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's e-mail recognizer, checking domains against the bundled suffix list."""

    def validate_result(self, pattern_text: str) -> bool:
        return bool(_offline_suffixes(pattern_text).fqdn)


@dataclass(frozen=True)
class Redaction:
    """A scanned text: the copy with findings masked, and how many of each kind were found."""

    redacted: str
    findings: dict[str, int]


class PersonalDataScanner:
    """Finds personal data in text and masks it. Built once per process (about half a second)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._engine: AnalyzerEngine | None = None

    def warm(self) -> None:
        """Build the analyzer now (about half a second), so the first text scanned does not."""
        self._analyzer()

    def _analyzer(self) -> AnalyzerEngine:
        with self._lock:
            if self._engine is None:
                self._engine = _build_analyzer()
            return self._engine

    def scan(self, text: str) -> Redaction:
        """Mask every finding in `text`, overlapping findings merged into the strongest."""
        spans = self._spans(text)
        counts: Counter[str] = Counter()
        out, cursor = [], 0
        for start, end, kind in spans:
            out.append(text[cursor:start])
            out.append(MASKS.get(kind, "[personal data]"))
            counts[kind] += 1
            cursor = end
        out.append(text[cursor:])
        return Redaction(redacted="".join(out), findings=dict(sorted(counts.items())))

    def personal_data_in(self, text: str, *, allowed: Iterable[str] = ()) -> list[str]:
        """The kinds of personal data in `text` (in words, each once, in the order found),
        leaving out links and the values of `allowed`, the business's own contact details
        (its privacy e-mail, phone and street address), which a staff member may well quote.
        Every finding counts, even one inside a link (a phone number in a URL's query). Names
        and dates are not found: the scanner has no language model."""
        mine = {_comparable(value) for value in allowed if value}
        kinds: dict[str, None] = {}
        results = sorted(self._analyzer().analyze(text=text, language="en"), key=lambda r: r.start)
        for result in results:
            if result.entity_type == "URL":
                continue
            found = _comparable(text[result.start : result.end])
            if found in mine or (
                result.entity_type == "STREET_ADDRESS" and any(v.startswith(found) for v in mine)
            ):
                continue  # the business's own (a street address perhaps without its suite)
            kinds[KIND_NAMES.get(result.entity_type, "personal data")] = None
        return list(kinds)

    def _spans(self, text: str) -> list[tuple[int, int, str]]:
        results = self._analyzer().analyze(text=text, language="en")
        return _merge([(r.start, r.end, r.entity_type, r.score) for r in results])


def _comparable(value: str) -> str:
    """Letters and digits only, lowercased, without a leading US country code: `(800) 555-0100`,
    `+1 800 555 0100` and `1-800-555-0100` compare equal."""
    plain = re.sub(r"[^0-9a-z@]", "", value.lower())
    return plain[1:] if re.fullmatch(r"1\d{10}", plain) else plain


def _merge(found: list[tuple[int, int, str, float]]) -> list[tuple[int, int, str]]:
    """Overlapping spans become one, labelled by the highest-scoring (then longest) finding."""
    merged: list[tuple[int, int, str, float, int]] = []
    for start, end, kind, score in sorted(found):
        if merged and start < merged[-1][1]:
            m_start, m_end, m_kind, m_score, m_len = merged[-1]
            stronger = (score, end - start) > (m_score, m_len)
            merged[-1] = (
                m_start,
                max(m_end, end),
                kind if stronger else m_kind,
                max(score, m_score),
                max(m_len, end - start),
            )
        else:
            merged.append((start, end, kind, score, end - start))
    return [(start, end, kind) for start, end, kind, _, _ in merged]


def _blank_pipeline() -> Path:
    """A blank spaCy English pipeline on disk, written once per spaCy version and reused."""
    version = importlib.metadata.version("spacy")
    folder = Path(tempfile.gettempdir()) / f"pledge-spacy-blank-en-{version}"
    if not (folder / "config.cfg").exists():
        staging = Path(tempfile.mkdtemp(prefix="pledge-spacy-"))
        spacy.blank("en").to_disk(staging)
        try:
            staging.rename(folder)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)  # another process wrote it first
    return folder


def _build_analyzer() -> AnalyzerEngine:
    model_dir = str(_blank_pipeline())
    configuration: dict[str, Any] = {
        "nlp_engine_name": "spacy",
        "models": [{"lang_code": "en", "model_name": model_dir}],
    }
    nlp_engine = NlpEngineProvider(nlp_configuration=configuration).create_engine()
    registry = RecognizerRegistry(supported_languages=["en"])
    street = PatternRecognizer(
        supported_entity="STREET_ADDRESS",
        patterns=[Pattern("US street address", STREET_ADDRESS, 0.6)],
    )
    for recognizer in (
        _OfflineEmailRecognizer(),
        PhoneRecognizer(),
        CreditCardRecognizer(),
        UrlRecognizer(),
        street,
    ):
        registry.add_recognizer(recognizer)
    # Presidio logs every analyzed request at INFO with its text; keep its logger quiet.
    logging.getLogger("presidio-analyzer").setLevel(logging.WARNING)
    return AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=["en"])
