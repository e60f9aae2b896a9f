"""Sensitive-data detection, redaction and the facts the other analyses use.

- :mod:`.recognizer` and :mod:`.recognizers`: one recognizer per type (or family);
- :mod:`.scanner`: :class:`SensitiveDataScanner`, one prefilter pass per value;
- :mod:`.enricher`: :class:`SensitiveDataEnricher`, the pipeline stage and its findings;
- :mod:`.redaction`: :func:`redact_span`, used by the redacting forwarder.
"""

from __future__ import annotations

from enrichers.sensitive.redaction import redact_span
from enrichers.sensitive.scanner import Match, SensitiveDataScanner, redact_text

__all__ = ["Match", "SensitiveDataScanner", "redact_span", "redact_text"]
