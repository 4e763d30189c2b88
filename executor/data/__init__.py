"""Data preparation: load -> detect schema -> clean -> redact PII -> filter -> de-duplicate -> split -> report.

Every input row ends in exactly one of train, validation, test or rejects (with its reason and source).
"""
