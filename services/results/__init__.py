"""Lab results, LOINC transcoding and the Mon Espace Santé gate (issue #6).

Module map in ``docs/architecture.md`` (section "Results, LOINC and the MES gate"). This package
``__init__`` imports nothing, so that ``services.storage.models`` can import
``services.results.models`` without a cycle.
"""
