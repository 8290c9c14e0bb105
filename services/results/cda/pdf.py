"""The PDF copy of a lab report (fpdf2), embedded in the CDA CR-BIO (FR-Document-PDF-copie).

Page 1 carries the INS in clear — matricule grouped with its key, the OID and its label — and the
INS DataMatrix beside it (EXI DIF 02; content and image from :mod:`services.vitale.datamatrix`),
then the lab, the patient's strict traits, and the results chapter by chapter (label, value,
unit, reference range, interpretation, LOINC code) with their comments. Every page repeats the
patient's birth name, first name and birth date in its footer.

The PDF uses the standard PDF fonts (no font file to ship): text is written in Latin-1, the few
characters outside it (``≤``, ``œ``, typographic quotes…) are replaced by an ASCII equivalent.
The output is deterministic for a given report (creation date = the report's).
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from services.identity.matricule import oid_label
from services.results.cda.model import PARIS, CdaReport
from services.results.cda.values import group_by_chapter, interpretation_label
from services.storage.db import user_data_dir
from services.vitale import datamatrix

__all__ = [
    "ENV_PDF_DIR",
    "display_unit",
    "ins_datamatrix",
    "ins_in_clear",
    "pdf_folder",
    "render_report_pdf",
]

_REPLACEMENTS: Final = {
    "\u2018": "'",
    "\u2019": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u2013": "-",
    "\u2014": "-",
    "\u2026": "...",
    "\u2264": "<=",
    "\u2265": ">=",
    "\u0152": "OE",
    "\u0153": "oe",
    "\u20ac": "EUR",
    "\u202f": " ",
    "\u2009": " ",
    "\u00a0": " ",
    "\u2022": "-",
    "\u2192": "->",
}


def latin1(text: str) -> str:
    """``text`` in Latin-1 for the standard PDF fonts (ASCII equivalents, else ``?``)."""
    out = []
    for ch in text:
        ch = _REPLACEMENTS.get(ch, ch)
        try:
            ch.encode("latin-1")
        except UnicodeEncodeError:
            stripped = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
            try:
                stripped.encode("latin-1")
                ch = stripped or "?"
            except UnicodeEncodeError:
                ch = "?"
        out.append(ch)
    return "".join(out)


def display_unit(ucum: str) -> str:
    """A UCUM code as people read it: ``10*9/L`` → ``10^9/L``, ``umol/L`` → ``µmol/L``."""
    text = re.sub(r"10\*(-?[0-9]+)", r"10^\1", ucum)
    return re.sub(r"(?<![A-Za-z])u(?=(?:mol|g|L|U|m|s)\b)", "µ", text)


def ins_in_clear(report: CdaReport) -> str:
    """``2 79 03 51 215 189 89`` (NIR grouping) of the patient's matricule INS with its key."""
    m = report.patient.ins.matricule
    return " ".join((m[0], m[1:3], m[3:5], m[5:7], m[7:10], m[10:13], m[13:15]))


def ins_datamatrix(report: CdaReport) -> datamatrix.InsDataMatrix:
    """The INS DataMatrix content of the report's patient (ANS v2.2 layout)."""
    p = report.patient
    return datamatrix.InsDataMatrix(
        matricule=p.ins.matricule,
        oid=p.ins.oid,
        first_names=p.first_names,
        birth_name=p.birth_name,
        sex=p.sex,
        birth_date=p.birth_date,
        birthplace=p.birthplace,
    )


_CELL_LINE_MM = 4.4
_CELL_PAD_MM = 1.0


def _wrap(pdf: FPDF, text: str, width: float) -> list[str]:
    """``text`` in lines that fit ``width`` (mm) in the current font, broken between words (a
    word longer than a line is cut)."""
    if not text or pdf.get_string_width(text) <= width:
        return [text]
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if pdf.get_string_width(candidate) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
        while pdf.get_string_width(word) > width and len(word) > 1:
            cut = len(word) - 1
            while cut > 1 and pdf.get_string_width(word[:cut]) > width:
                cut -= 1
            lines.append(word[:cut])
            word = word[cut:]
        current = word
    if current:
        lines.append(current)
    return lines


def _table(
    pdf: FPDF, widths: tuple[float, ...], headers: tuple[str, ...], rows: Sequence[tuple[str, ...]]
) -> None:
    """A bordered table, the header row in bold (again at the top of a new page): each cell is
    measured once and drawn with plain ``cell`` calls (fpdf2's ``table`` lays every cell out with
    ``multi_cell``, most of a report's time)."""

    def draw(cells: tuple[str, ...], style: str) -> None:
        pdf.set_font("helvetica", style, 8)
        wrapped = [_wrap(pdf, text, w - 2 * _CELL_PAD_MM) for text, w in zip(cells, widths, strict=True)]
        height = max(len(lines) for lines in wrapped) * _CELL_LINE_MM
        if pdf.will_page_break(height):
            pdf.add_page()
            if style == "":
                draw(headers, "B")
                pdf.set_font("helvetica", style, 8)
        x0, y0 = pdf.l_margin, pdf.get_y()
        x = x0
        for lines, w in zip(wrapped, widths, strict=True):
            pdf.rect(x, y0, w, height)
            for k, text in enumerate(lines):  # on the baseline where ``cell`` would put it
                if text:
                    pdf.text(x + _CELL_PAD_MM, y0 + (k + 0.5) * _CELL_LINE_MM + 0.3 * pdf.font_size, text)
            x += w
        pdf.set_xy(x0, y0 + height)

    previous_margin = pdf.c_margin
    pdf.c_margin = _CELL_PAD_MM
    try:
        draw(headers, "B")
        for cells in rows:
            draw(cells, "")
    finally:
        pdf.c_margin = previous_margin


def render_report_pdf(report: CdaReport) -> bytes:
    """The PDF of ``report`` (bytes starting with ``%PDF``)."""

    p = report.patient
    lab = report.lab
    dm = ins_datamatrix(report)
    content = datamatrix.build_content(dm)  # checks the traits: a bad one is refused, not printed
    image = datamatrix.render(content, module_size=5)

    footer_text = latin1(
        f"{p.birth_name} {p.first_name} - né(e) le {p.birth_date:%d/%m/%Y} - "
        f"INS {ins_in_clear(report)} - CR version {report.version}"
    )

    class _Pdf(FPDF):
        def footer(self) -> None:
            self.set_y(-12)
            self.set_font("helvetica", "", 7)
            self.cell(0, 5, footer_text, align="L")
            self.cell(0, 5, f"Page {self.page_no()}/{{nb}}", align="R")

    pdf = _Pdf(orientation="P", unit="mm", format="A4")
    pdf.set_creation_date(report.created_at)
    pdf.set_title(latin1("Compte rendu d'examens biologiques"))
    pdf.set_author(latin1(lab.organization.name))
    pdf.set_creator("insdesk")
    pdf.set_margins(15, 12, 15)
    pdf.set_auto_page_break(auto=True, margin=16)
    pdf.alias_nb_pages()
    pdf.add_page()

    def line(text: str, *, size: float = 9, style: str = "", height: float = 4.6) -> None:
        pdf.set_font("helvetica", style, size)
        clear = latin1(text)
        room = pdf.w - pdf.r_margin - pdf.get_x() - 2 * pdf.c_margin
        if pdf.get_string_width(clear) <= room:  # one line: a plain cell (multi_cell lays it out)
            pdf.cell(0, height, clear, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        else:
            pdf.multi_cell(0, height, clear, new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    # Lab (left) and DataMatrix (right, page 1: EXI DIF 02).
    pdf.image(image, x=170, y=12, w=26)
    pdf.set_xy(166, 39)
    pdf.set_font("helvetica", "", 6)
    pdf.cell(34, 3, "DataMatrix INS", align="C")
    pdf.set_xy(15, 12)
    pdf.set_right_margin(45)
    org = lab.organization
    line(org.name, size=12, style="B", height=6)
    for address_line in org.address.lines():
        line(address_line)
    if org.telecom:
        line(org.telecom.removeprefix("tel:"))
    line(f"Biologiste responsable : {lab.biologist.display}")
    pdf.set_right_margin(15)
    pdf.set_y(max(pdf.get_y(), 42) + 2)

    line("Compte rendu d'examens de biologie médicale", size=14, style="B", height=8)
    created = report.created_at.astimezone(PARIS)
    validated = (report.validated_at or report.created_at).astimezone(PARIS)
    line(
        f"Version {report.version} - édité le {created:%d/%m/%Y à %H:%M} - "
        f"validé le {validated:%d/%m/%Y à %H:%M}",
        size=8,
    )
    pdf.ln(2)

    # Patient: INS in clear, then the strict traits.
    pdf.set_fill_color(240, 240, 240)
    top = pdf.get_y()
    line("Patient", size=10, style="B")
    line(f"INS (matricule INS) : {ins_in_clear(report)}", size=11, style="B", height=5.5)
    line(f"OID : {p.ins.oid} ({oid_label(p.ins.oid)})")
    line(f"Nom de naissance : {p.birth_name}")
    line(f"Prénom(s) de naissance : {' '.join(p.first_names)}")
    line(f"Premier prénom de naissance : {p.first_name}")
    if p.used_name or p.used_first_name:
        line(f"Nom et prénom utilisés : {p.used_name or p.birth_name} {p.used_first_name or p.first_name}")
    line(f"Sexe : {'masculin' if p.sex == 'M' else 'féminin'} - né(e) le {p.birth_date:%d/%m/%Y}")
    if p.birthplace:
        place = f"{p.birthplace_name} ({p.birthplace})" if p.birthplace_name else p.birthplace
        line(f"Lieu de naissance : {place}")
    pdf.rect(13, top - 1, 184, pdf.get_y() - top + 2)
    pdf.ln(4)

    # Results by chapter and request.
    widths = (54, 22, 18, 32, 32, 22)
    headers = ("Analyse", "Résultat", "Unité", "Valeurs de référence", "Interprétation", "LOINC")
    for chapter, items in group_by_chapter(report.requests):
        line(chapter.display.upper(), size=11, style="B", height=6)
        for request, observations in items:
            title = request.label
            if request.collected_at is not None:
                title += f" - prélevé le {request.collected_at.astimezone(PARIS):%d/%m/%Y à %H:%M}"
            if request.specimen:
                title += f" ({request.specimen})"
            line(title, size=9, style="B")
            rows = [
                (
                    latin1(obs.label),
                    latin1(obs.shown_value),
                    latin1(display_unit(obs.shown_unit)),
                    latin1(obs.reference_range.shown if obs.reference_range else ""),
                    latin1(interpretation_label(obs.interpretation) or (obs.flag or "")),
                    obs.loinc,
                )
                for obs in observations
            ]
            _table(pdf, widths, tuple(latin1(h) for h in headers), rows)
            for obs in observations:
                for comment in obs.comments:
                    line(f"{obs.label} : {comment}", size=8, style="I", height=4)
            pdf.ln(2)

    if report.comments:
        line("Commentaires", size=10, style="B")
        for comment in report.comments:
            line(comment, size=9)

    pdf.ln(3)
    line(f"Compte rendu validé par {lab.biologist.display} (RPPS {lab.biologist.id_extension}).", size=8)
    return bytes(pdf.output())


# ---------------------------------------------------------------------------------------------
# The PDF copy on disk (the biologist's « Copie PDF »)

ENV_PDF_DIR: Final = "INSDESK_PDF_DIR"


def pdf_folder() -> Path:
    """Where the PDF copies the biologist opens are written: ``$INSDESK_PDF_DIR``, else ``pdf/``
    in the user data directory (created)."""
    env = os.environ.get(ENV_PDF_DIR)
    folder = Path(env) if env else user_data_dir() / "pdf"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
