"""Append-only, hash-chained audit log (``log``) and its external anchor (``anchor``)."""
