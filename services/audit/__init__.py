"""Append-only, hash-chained audit log (``log``); its external anchor file is ``services.storage.anchor``."""
