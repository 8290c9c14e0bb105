"""One report (from « Résultats bloqués »): its verdict, each result with its LOINC mapping and problem.

On a result whose LOINC mapping is the problem, ``l`` (or Entrée) opens the LOINC fix modal;
after a fix the report is read again (its verdict is recomputed by the gate in the same
transaction as the mapping).

``m`` matches an unmatched report to an identity by hand (``report_match``: search, the traits
side by side, confirm; audited). ``p`` writes the CR-BIO's PDF copy of a ready (or sent) report
into the PDF folder (``$INSDESK_PDF_DIR``, else ``pdf/`` in the user data directory) and opens it
with the desktop's opener (``$INSDESK_OPENER``, else ``xdg-open`` when a display is there),
else shows its path. ``e`` sends a ready report through the installation's sender
(``services.sender()``: the file drop of ``services.results.outbox`` — ``$INSDESK_OUTBOX``, else
``outbox/`` in the user data directory — or the DMP with ``outbox.kind=dmp``; any
``ReportSender`` the app is given as ``services.results_sender``), audited ``report.sent``. Under
the status, where the report stands with the DMP: sent (when, which version), refused by the DMP
(its code and the French message), withdrawn.
Everything runs in workers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from rich.text import Text
from sqlmodel import col, select
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Static

from services.desk.results import send_reports, write_pdf_copy
from services.errors import NotFound
from services.results.catalog import get_entry
from services.results.loinc import get_code, replacement_for
from services.results.matching import can_match
from services.results.models import LabReport, MatchSource, Observation, ReportStatus
from services.results.outbox import FileDropSender, ReportSender
from services.results.reasons import LOINC_FIXABLE, reason_label
from services.storage.models import Identity
from services.users import Right, require
from tui.desk_app import DeskApp
from tui.format import fr_datetime
from tui.screens.loinc_fix import FixResult, FixTarget, LoincFixModal, released_sentence
from tui.screens.report_match import MatchDone, MatchTarget, ReportMatchModal
from tui.screens.results_blocked import clip, patient_name, status_text
from tui.screens.worker_errors import WorkerErrorsToApp
from tui.widgets.desk_footer import DeskFooter
from tui.widgets.keyed_table import KeyedTable
from tui.widgets.status_bar import StatusBar

LABEL_WIDTH = 22


@dataclass(frozen=True)
class ObservationRow:
    key: str
    local_code: str
    label: str
    value: str
    unit: str
    reference_range: str
    loinc: str
    """The mapping used: the catalogue's, else the message's (``LN``), else ""."""
    loinc_source: str
    """``catalogue``, ``message`` or ""."""
    loinc_label: str
    problems: tuple[tuple[str, str], ...]
    """(reason code, French message) from the gate's verdict."""
    entry_version: int | None
    entry_unit: str | None
    specimen: str | None
    replacement: str | None = None
    """The code the value set names to replace this deprecated one."""
    replacement_label: str | None = None

    @property
    def loinc_problem(self) -> bool:
        return any(code in LOINC_FIXABLE for code, _ in self.problems)

    def fix_target(self, report_id: int) -> FixTarget:
        return FixTarget(
            report_id=report_id,
            local_code=self.local_code,
            label=self.label,
            unit=self.unit or None,
            entry_version=self.entry_version,
            entry_unit=self.entry_unit,
            specimen=self.specimen,
            current=self.loinc if self.loinc_source == "catalogue" else "",
            problems=tuple(message for code, message in self.problems if code in LOINC_FIXABLE),
            replacement=self.replacement,
            replacement_label=self.replacement_label,
        )


@dataclass(frozen=True)
class ReportView:
    id: int
    patient: str
    local_id: str
    received: str
    status: str
    report_reasons: tuple[tuple[str, str], ...]
    observations: tuple[ObservationRow, ...]
    matchable: bool = False
    """Unmatched (PATIENT_UNMATCHED), or matched by hand: ``m`` may (re)match it."""
    traits: dict[str, Any] | None = None
    """The patient as the lab sent it (for the match modal)."""
    refusal: str | None = None
    """The DMP's code of the last refusal of this version (``DMPClosed``…)."""
    sending: str = ""
    """Where the report stands with the DMP, in French (sent on…, refused…, withdrawn)."""
    masking: tuple[str, ...] = ()
    """The DMP masking codes chosen for this report (``k``)."""


def sending_sentence(report: LabReport) -> str:
    """« Envoyé le 06/12/2026 10:30 (version 2) », « Refusé par le DMP (DMPClosed) : … », « Retiré du DMP »
    (the detail screen's line under the status)."""
    status = ReportStatus(report.status)
    if status is ReportStatus.WITHDRAWN:
        return f"Retiré du DMP (version {report.sent_version or report.version_number} supprimée)."
    if status is ReportStatus.SENT:
        when = f" le {fr_datetime(report.sent_at)}" if report.sent_at is not None else ""
        return f"Envoyé{when} (version {report.sent_version or report.version_number})."
    if report.send_refusal:
        from services.dmp.codes import ERROR_MESSAGES

        message = ERROR_MESSAGES.get(report.send_refusal, "")
        return f"Refusé par le DMP ({report.send_refusal})" + (f" : {message}" if message else ".")
    if report.sent_version:
        return f"Version {report.sent_version} envoyée ; cette version {report.version_number} la remplacera."
    return ""


def load_report(session: Any, actor: Any, report_id: int) -> ReportView:
    """The report as the screen shows it (in a worker; Right.RESULTS)."""
    require(actor, Right.RESULTS)
    report = session.get(LabReport, report_id)
    if report is None:
        raise NotFound(f"Compte rendu n°{report_id} introuvable.", code="report_not_found")
    identity = session.get(Identity, report.identity_id) if report.identity_id is not None else None
    local_ids = [str(x) for x in report.patient_local_ids or []]
    if identity is not None:
        patient = patient_name(identity.birth_name, identity.first_name)
        local_id = identity.local_id if identity.local_id in local_ids else ""
    else:
        traits = report.patient_traits or {}
        firsts = traits.get("first_names") or []
        patient = patient_name(traits.get("birth_name"), firsts[0] if firsts else None)
        patient += " (non rapproché)"
    local_id = (local_id if identity is not None else "") or (local_ids[0] if local_ids else "")
    reasons = [
        (str(r.get("code")), r.get("observation"), str(r.get("message") or "")) for r in report.reasons or []
    ]
    observations = session.exec(
        select(Observation)
        .where(Observation.report_id == report_id)
        .order_by(col(Observation.request_id), col(Observation.seq), col(Observation.id))
    ).all()
    rows: list[ObservationRow] = []
    entries: dict[str, Any] = {}
    for obs in observations:
        code = obs.local_code or ""
        if code and code not in entries:
            entries[code] = get_entry(session, code)
        entry = entries.get(code)
        loinc, source = "", ""
        if entry is not None and entry.loinc:
            loinc, source = entry.loinc, "catalogue"
        elif obs.loinc_in_message:
            loinc, source = obs.loinc_in_message, "message"
        known = get_code(session, loinc) if loinc else None
        replacement = replacement_for(session, loinc) if loinc else None
        value = obs.value or ""
        if obs.abnormal_flag and obs.abnormal_flag != "N":
            value += f" ({obs.abnormal_flag})"
        rows.append(
            ObservationRow(
                key=str(obs.id),
                local_code=code,
                label=obs.label or (entry.label if entry is not None else "") or code,
                value=value,
                unit=obs.unit or "",
                reference_range=obs.reference_range or "",
                loinc=loinc,
                loinc_source=source,
                loinc_label=known.label_fr if known is not None else "",
                problems=tuple((c, m) for c, o, m in reasons if o is not None and o == code),
                entry_version=int(entry.version) if entry is not None else None,
                entry_unit=entry.unit if entry is not None else None,
                specimen=entry.specimen if entry is not None else None,
                replacement=replacement.code if replacement is not None else None,
                replacement_label=replacement.label_fr if replacement is not None else None,
            )
        )
    unmatched = any(c == "PATIENT_UNMATCHED" for c, _o, _m in reasons)
    manual = report.match_source == MatchSource.MANUAL
    traits = dict(report.patient_traits or {})
    return ReportView(
        id=int(report.id or 0),
        patient=patient,
        local_id=local_id,
        received=fr_datetime(report.received_at),
        status=str(report.status),
        report_reasons=tuple((c, m) for c, o, m in reasons if o is None),
        observations=tuple(rows),
        matchable=(unmatched or manual) and report.status not in (ReportStatus.SENT, ReportStatus.WITHDRAWN),
        refusal=report.send_refusal,
        masking=tuple(report.masking or ()),
        sending=sending_sentence(report),
        traits={
            "birth_name": traits.get("birth_name"),
            "used_name": traits.get("used_name"),
            "first_names": list(traits.get("first_names") or []),
            "birth_date": traits.get("birth_date"),
            "sex": traits.get("sex"),
            "local_ids": local_ids,
        },
    )


def open_with_desktop(path: Path) -> str | None:
    """Open ``path`` with the desktop's opener, without waiting for it: ``$INSDESK_OPENER``, else
    ``xdg-open`` when a display is there. The opener's name, or None when there is none."""
    opener = os.environ.get("INSDESK_OPENER")
    if not opener:
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            return None
        opener = shutil.which("xdg-open") or ""
    if not opener:
        return None
    try:
        subprocess.Popen(
            [opener, str(path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError:
        return None
    return Path(opener).name


class ReportDetailScreen(Screen[None], WorkerErrorsToApp):  # Screen first: its CSS applies
    HELP_TITLE = "Compte rendu : touches"
    DESK_ACTIONS = False
    FOOTER_LESS = ("masking",)
    """Left out of a short footer first (still in help and the palette)."""
    BINDINGS = [
        Binding(
            "l",
            "fix_loinc",
            "Corriger LOINC",
            id="report.fix_loinc",
            tooltip="Corriger le code LOINC du résultat sélectionné",
        ),
        Binding(
            "m",
            "match",
            "Rapprocher",
            id="report.match",
            tooltip="Rapprocher à la main ce compte rendu d'une identité (audité)",
        ),
        Binding(
            "p",
            "pdf",
            "Copie PDF",
            id="report.pdf",
            tooltip="Écrire et ouvrir la copie PDF du CR-BIO",
        ),
        Binding(
            "e",
            "send",
            "Envoyer",
            id="report.send",
            tooltip="Envoyer ce compte rendu prêt vers la boîte d'envoi configurée (audité)",
        ),
        Binding(
            "k",
            "masking",
            "Masquage",
            id="report.masking",
            tooltip="Choisir ce que le DMP cache de ce compte rendu avant l'envoi (audité)",
        ),
        Binding(
            "escape", "back", "Retour", id="report.back", tooltip="Revenir à la liste des comptes rendus"
        ),
        Binding("ctrl+r", "reload", "Actualiser", id="report.reload", tooltip="Relire le compte rendu"),
    ]

    @dataclass
    class Loaded(Message):
        view: ReportView

    @dataclass
    class PdfWritten(Message):
        path: Path
        opener: str | None

    @dataclass
    class Sent(Message):
        sent: list[int]
        refused: list[dict[str, Any]]
        where: str

    def __init__(self, report_id: int) -> None:
        super().__init__()
        self.report_id = report_id
        self.view: ReportView | None = None

    @property
    def insdesk(self) -> DeskApp:
        return cast(DeskApp, self.app)

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status-bar")
        with Horizontal(id="report-header"):
            yield Static(f"Compte rendu n°{self.report_id}", id="report-title")
            yield Static("", id="report-status")
        yield Static("", id="report-sending")
        yield Static("", id="report-reasons")
        table = KeyedTable(id="observations", cursor_type="row", zebra_stripes=True)
        table.add_column("Code", key="code")
        table.add_column("Libellé", key="label", width=LABEL_WIDTH)
        table.add_column("Valeur", key="value")
        table.add_column("Unité", key="unit")
        table.add_column("LOINC", key="loinc")
        table.add_column("Problème", key="problem")
        yield table
        yield Static("Chargement…", id="observation-detail")
        yield DeskFooter()

    @property
    def table(self) -> KeyedTable:
        return self.query_one("#observations", KeyedTable)

    def on_mount(self) -> None:
        self.table.focus()
        self._load()

    def action_back(self) -> None:
        self.dismiss(None)

    def action_reload(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="load")
    def _load(self) -> None:
        actor = self.insdesk.actor
        assert actor is not None
        with self.insdesk.services.db.session() as session:
            view = load_report(session, actor, self.report_id)
        self.post_message(self.Loaded(view))

    @on(Loaded)
    def _loaded(self, event: Loaded) -> None:
        view = event.view
        selected = self.selected()
        self.view = view
        title = f"Compte rendu n°{view.id} · {view.patient}"
        if view.local_id:
            title += f" · {view.local_id}"
        title += f" · reçu le {view.received}"
        self.query_one("#report-title", Static).update(title)
        self.query_one("#report-status", Static).update(status_text(view.status, view.refusal))
        sending = self.query_one("#report-sending", Static)
        text = view.sending
        if view.masking:
            from services.dmp.codes import MASKING_CODES

            masked = "Masquage : " + ", ".join(MASKING_CODES.get(c, c) for c in view.masking) + "."
            text = f"{text} {masked}" if text else masked
        sending.update(text)
        sending.display = bool(text)
        reasons = self.query_one("#report-reasons", Static)
        reasons.update(
            Text("\n").join(
                Text.assemble((reason_label(code), "bold"), " : ", message)
                for code, message in view.report_reasons
            )
        )
        reasons.display = bool(view.report_reasons)
        table = self.table
        table.clear()
        for row in view.observations:
            if row.problems:
                problem = Text(
                    ", ".join(dict.fromkeys(reason_label(c) for c, _ in row.problems)), style="red"
                )
            else:
                problem = Text("conforme", style="green3")
            loinc = row.loinc + (" (msg)" if row.loinc_source == "message" else "") if row.loinc else "—"
            table.add_row(
                row.local_code,
                clip(row.label, LABEL_WIDTH),
                row.value,
                row.unit,
                loinc,
                problem,
                key=row.key,
            )
        first_problem = next((i for i, r in enumerate(view.observations) if r.problems), 0)
        table.move_cursor_to_key(selected.key if selected is not None else None, otherwise=first_problem)
        self._show_detail()

    def selected(self) -> ObservationRow | None:
        if self.view is None or not self.view.observations:
            return None
        row = self.table.cursor_row
        if 0 <= row < len(self.view.observations):
            return self.view.observations[row]
        return None

    @on(DataTable.RowHighlighted, "#observations")
    def _highlighted(self) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        detail = self.query_one("#observation-detail", Static)
        row = self.selected()
        self.refresh_bindings()
        if row is None:
            detail.update("Aucun résultat dans ce compte rendu." if self.view is not None else "Chargement…")
            return
        text = Text()
        text.append(f"{row.local_code} · {row.label}", style="bold")
        value = " ".join(v for v in (row.value, row.unit) if v)
        if value:
            text.append(f" · {value}")
        if row.reference_range:
            text.append(f" (réf. {row.reference_range})", style="dim")
        text.append("\nLOINC : ")
        if row.loinc:
            text.append(row.loinc, style="bold")
            source = "catalogue" if row.loinc_source == "catalogue" else "message du laboratoire"
            text.append(f" ({source})" + (f" · {row.loinc_label}" if row.loinc_label else ""))
        else:
            text.append("aucun", style="bold")
        for _code, message in row.problems:
            text.append("\n")
            text.append(message, style="red")
        if row.loinc_problem:
            text.append("\nL ou Entrée : corriger le code LOINC de ", style="dim")
            text.append(row.local_code, style="dim bold")
        detail.update(text)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        actor = self.insdesk.actor
        view = self.view
        if action == "fix_loinc":
            row = self.selected() if self.is_mounted else None
            return row is not None and row.loinc_problem and actor is not None and actor.can(Right.CATALOG)
        if action == "match":
            return view is not None and view.matchable and actor is not None and can_match(actor)
        if action == "pdf":
            return view is not None and view.status in ("ready", "sent")
        if action == "send":
            return view is not None and view.status == "ready"
        return True

    # -- match by hand ---------------------------------------------------------------------------

    def action_match(self) -> None:
        view = self.view
        if view is None or not view.matchable:
            return
        self.app.push_screen(
            ReportMatchModal(MatchTarget(view.id, view.traits or {})), callback=self._matched
        )

    def _matched(self, done: MatchDone | None) -> None:
        if done is None:
            return
        state = "prêt pour MES" if done.status == "ready" else "toujours bloqué"
        self.notify(
            f"Compte rendu n°{done.report_id} rapproché de l'identité n°{done.identity_id} : {state}.",
            title="Rapprochement enregistré",
            severity="information" if done.status == "ready" else "warning",
        )
        self._load()

    # -- PDF copy ----------------------------------------------------------------------------------

    def action_pdf(self) -> None:
        if self.view is not None:
            self._write_pdf(self.view.id)

    @work(thread=True, exclusive=True, exit_on_error=False, group="pdf")
    def _write_pdf(self, report_id: int) -> None:
        actor = self.insdesk.actor
        assert actor is not None
        path = write_pdf_copy(self.insdesk.services.db, actor=actor, report_id=report_id)
        self.post_message(self.PdfWritten(path, open_with_desktop(path)))

    @on(PdfWritten)
    def _pdf_written(self, event: PdfWritten) -> None:
        if event.opener:
            self.notify(f"Ouverte avec {event.opener} : {event.path}", title="Copie PDF du compte rendu")
        else:
            self.notify(
                f"Aucune application pour l'ouvrir ici ; fichier écrit : {event.path}",
                title="Copie PDF du compte rendu",
                timeout=15,
            )

    # -- send ------------------------------------------------------------------------------------------

    def action_send(self) -> None:
        if self.view is not None and self.view.status == "ready":
            self._send(self.view.id)

    def _sender(self) -> ReportSender:
        """The installation's sender (``outbox.kind``: the file drop or the DMP)."""
        configured = getattr(self.insdesk.services, "results_sender", None)
        if configured is not None:
            return cast(ReportSender, configured)
        make = getattr(self.insdesk.services, "sender", None)
        return cast(ReportSender, make()) if callable(make) else FileDropSender()

    @work(thread=True, exclusive=True, exit_on_error=False, group="send")
    def _send(self, report_id: int) -> None:
        actor = self.insdesk.actor
        assert actor is not None
        sender = self._sender()
        try:
            result = send_reports(
                self.insdesk.services.db, actor=actor, sender=sender, report_ids=[report_id]
            )
        finally:
            close = getattr(sender, "close", None)
            if callable(close):
                close()  # the DMP sender's connections
        where = "le DMP" if sender.name == "dmp" else str(getattr(sender, "folder", "")) or sender.name
        self.post_message(self.Sent(result.sent, result.refused, where))

    @on(Sent)
    def _sent(self, event: Sent) -> None:
        if event.sent:
            verb = "Envoyé vers" if event.where == "le DMP" else "Déposé dans"
            self.notify(f"{verb} {event.where}", title=f"Compte rendu n°{event.sent[0]} envoyé")
        for refused in event.refused:
            self.notify(str(refused.get("reason")), title="Envoi refusé", severity="error", timeout=15)
        self._load()

    @on(DataTable.RowSelected, "#observations")
    def _row_selected(self) -> None:
        row = self.selected()
        if row is not None and row.loinc_problem:
            self.action_fix_loinc()

    def action_masking(self) -> None:
        """« Masquage » (k): the DMP masking codes of a report not sent yet."""
        from tui.screens.masking_modal import MaskingModal

        view = self.view
        if view is None:
            return
        if view.status in ("sent", "withdrawn"):
            self.notify(
                "Le masquage se choisit avant l'envoi : ce compte rendu est déjà parti.",
                title="Masquage",
                severity="warning",
            )
            return

        def saved(codes: tuple[str, ...] | None) -> None:
            if codes is None:
                return
            self.notify(
                "Masquage enregistré" if codes else "Aucun masquage",
                title=f"Compte rendu n°{self.report_id}",
            )
            self._load()

        self.app.push_screen(MaskingModal(self.report_id, view.masking), saved)

    def action_fix_loinc(self) -> None:
        row = self.selected()
        if row is None or not row.loinc_problem or self.view is None:
            return
        self.app.push_screen(LoincFixModal(row.fix_target(self.view.id)), callback=self._fixed)

    def _fixed(self, result: FixResult | None) -> None:
        if result is None:
            return
        self.notify(released_sentence(len(result.released)), title=f"{result.local_code} → {result.loinc}")
        for warning in result.warnings:
            self.notify(warning, title="Avertissement", severity="warning")
        self._load()
