"""No NIR in application log files (ins-rules.md, Traceability)."""

import logging
from pathlib import Path

from services.logsafe import MASK, configure_file_logging, redact


def test_redact_masks_nir_with_and_without_key_and_spaces() -> None:
    assert redact("nir=180032B02040123 ok") == f"nir={MASK} ok"
    assert redact("2 85 06 75 112 345 92") == MASK
    assert redact("matricule 1600120777000") == f"matricule {MASK}"
    assert redact("IPP-000123 le 2024-01-02") == "IPP-000123 le 2024-01-02"


def test_log_file_never_contains_a_nir(tmp_path: Path) -> None:
    handler = configure_file_logging(tmp_path / "app.log")
    try:
        log = logging.getLogger("insdesk.test")
        log.info("INSi answered %s for %s", "160012B02077713", "ADRTROIS")
        try:
            raise ValueError("bad 160012B020777")
        except ValueError:
            log.exception("failure")
    finally:
        logging.getLogger("insdesk").removeHandler(handler)
        handler.close()
    text = (tmp_path / "app.log").read_text()
    assert "160012B020777" not in text
    assert "ADRTROIS" in text
    assert text.count(MASK) >= 2
