"""Supervision (issue #7): log review and anomalies, dashboard, exports, retention purge.

Rights: reviewing the log and the dashboard need ``Right.STATS`` (supervisor, admin); exports
need ``Right.AUDIT_EXPORT``; the purge needs ``Right.CONFIG`` (admin only: it destroys data).
"""

from __future__ import annotations

from services.users import Right

REVIEW_RIGHT = Right.STATS
EXPORT_RIGHT = Right.AUDIT_EXPORT
PURGE_RIGHT = Right.CONFIG
