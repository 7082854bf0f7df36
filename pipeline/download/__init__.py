"""The download stage: GETs under per-host limits, behind the SSRF guard."""
