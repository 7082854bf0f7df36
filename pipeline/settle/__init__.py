"""The settle stage: every URL ends stored, or failed with its reason, or is retried later."""
