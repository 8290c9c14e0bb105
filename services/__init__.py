"""insdesk core: identity rules, INSi, card reader, results, storage and audit.

This package never imports Textual or Rich (enforced by tests/test_import_hygiene.py
and the import-linter contract in pyproject.toml).
"""
