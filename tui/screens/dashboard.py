"""« Tableau de bord » (supervisor, F10): the qualification rate over time (a Sparkline and the
numbers), per agent and per capture channel, blocked MES reports by reason; export (CSV/PDF).

Figures from ``compute_dashboard`` and the export from ``export_dashboard`` (audited by the
service), both in workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Final, cast

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Label, Select, Sparkline, Static

from services.results.reasons import reason_label
from services.supervision import EXPORT_RIGHT, REVIEW_RIGHT
from services.supervision.dashboard import Dashboard, Period, compute_dashboard
from services.supervision.export import export_dashboard
from services.supervision.log_filter import PARIS
from services.users import require
from tui.desk_app import DeskApp
from tui.format import fr_date
from tui.screens.review_log import ExportModal, thousands
from tui.screens.worker_errors import WorkerErrorsToApp
from tui.widgets.desk_footer import DeskFooter
from tui.widgets.status_bar import StatusBar

SPANS: Final[dict[str, timedelta]] = {
    "day": timedelta(days=30),
    "week": timedelta(weeks=12),
    "month": timedelta(days=365),
}
SPAN_WORDS: Final[dict[str, str]] = {"day": "30 jours", "week": "12 semaines", "month": "12 mois"}
_BY_OPTIONS: Final = (("Par jour", "day"), ("Par semaine", "week"), ("Par mois", "month"))
CHANNEL_LABELS: Final[dict[str, str]] = {
    "manual": "saisie manuelle",
    "carte_vitale": "carte Vitale",
    "insi": "INSi",
    "datamatrix": "DataMatrix INS",
    "apcv": "appli carte Vitale",
}


def pct(x: float) -> str:
    return f"{x * 100:.1f} %".replace(".", ",")


def today() -> date:
    return datetime.now(PARIS).date()


def rate_text(dash: Dashboard) -> Text:
    if not dash.rate:
        return Text("Aucune donnée.", style="dim")
    last, first = dash.rate[-1], dash.rate[0]
    text = Text()
    text.append("Taux de qualification ", style="bold")
    text.append(pct(last.rate), style="bold green")
    text.append(
        f" ({thousands(last.qual)} QUAL / {thousands(last.identities)} identités) au {fr_date(last.period)}"
    )
    text.append(f" · {pct(first.rate)} au {fr_date(first.period)}", style="dim")
    return text


def blocked_text(dash: Dashboard) -> Text:
    received = sum(b.received for b in dash.blocked)
    blocked = sum(b.blocked for b in dash.blocked)
    reasons: dict[str, int] = {}
    for b in dash.blocked:
        for code, n in b.by_reason.items():
            reasons[code] = reasons.get(code, 0) + n
    text = Text()
    text.append("Résultats MES ", style="bold")
    text.append(f"{thousands(blocked)} bloqués / {thousands(received)} reçus")
    if reasons:
        text.append(" · ")
        for i, (code, n) in enumerate(sorted(reasons.items(), key=lambda cn: (-cn[1], cn[0]))):
            if i:
                text.append(" · ", style="dim")
            text.append(reason_label(code))
            text.append(f" {n}", style="bold")
    sending = dash.sending
    if sending.get("refused") or sending.get("withdrawn"):
        text.append("\nDMP ", style="bold")
        text.append(f"{thousands(sending.get('sent', 0))} envoyés")
        text.append(" · ", style="dim")
        text.append(f"{thousands(sending.get('refused', 0))} refusés par le DMP", style="red")
        text.append(" · ", style="dim")
        text.append(f"{thousands(sending.get('withdrawn', 0))} retirés")
    return text


class DashboardScreen(Screen[None], WorkerErrorsToApp):
    HELP_TITLE = "Tableau de bord : touches"
    DESK_ACTIONS = False
    BINDINGS = [
        Binding(
            "x", "export", "Exporter", id="dashboard.export", tooltip="Exporter le tableau de bord (CSV, PDF)"
        ),
        Binding("ctrl+r", "reload", "Actualiser", id="dashboard.reload", tooltip="Recalculer les chiffres"),
        Binding("escape", "back", "Retour", id="dashboard.back", tooltip="Revenir à l'écran précédent"),
    ]

    @dataclass
    class Loaded(Message):
        by: str
        dash: Dashboard

    @dataclass
    class Exported(Message):
        fmt: str
        path: Path
        rows: int

    def __init__(self) -> None:
        super().__init__()
        self.by: Period = "day"
        self.dash: Dashboard | None = None

    @property
    def insdesk(self) -> DeskApp:
        return cast(DeskApp, self.app)

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status-bar")
        with Horizontal(id="dash-head"):
            yield Static("Tableau de bord", id="dash-title")
            yield Label("Période", classes="filter-label")
            yield Select[str](_BY_OPTIONS, value="day", allow_blank=False, compact=True, id="dash-by")
        with VerticalScroll(id="dash-body"):
            yield Static("Calcul des indicateurs…", id="dash-rate")
            yield Sparkline([], id="dash-rate-chart")
            yield Static("Par agent", classes="dash-section")
            agents = DataTable[object](id="dash-agents", cursor_type="none", show_cursor=False)
            agents.add_columns("Agent", "Créées", "dont QUAL", "Taux", f"Qualif. ({SPAN_WORDS['day']})")
            yield agents
            yield Static("Par canal de saisie", classes="dash-section")
            channels = DataTable[object](id="dash-channels", cursor_type="none", show_cursor=False)
            channels.add_columns("Canal", "Identités", "QUAL", "Taux")
            yield channels
            yield Static("", id="dash-blocked")
            yield Sparkline([], id="dash-blocked-chart")
        yield DeskFooter()

    def on_mount(self) -> None:
        self.query_one("#dash-body").focus()
        self._load(self.by)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "export":
            actor = self.insdesk.actor
            return actor is not None and actor.can(EXPORT_RIGHT) and self.dash is not None
        return True

    def action_back(self) -> None:
        self.dismiss(None)

    def action_reload(self) -> None:
        self._load(self.by)

    @on(Select.Changed, "#dash-by")
    def _by_changed(self, event: Select.Changed) -> None:
        by = cast(Period, str(event.value))
        if by != self.by:
            self.by = by
            self._load(by)
        self.query_one("#dash-body").focus()

    # -- loading -----------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="load")
    def _load(self, by: Period) -> None:
        actor = self.insdesk.actor
        assert actor is not None
        require(actor, REVIEW_RIGHT)
        with self.insdesk.services.db.session() as session:
            dash = compute_dashboard(session, by=by, since=today() - SPANS[by])
        self.post_message(self.Loaded(by, dash))

    @on(Loaded)
    def _loaded(self, event: Loaded) -> None:
        if event.by != self.by:
            return
        dash = self.dash = event.dash
        self.query_one("#dash-title", Static).update(
            Text.assemble(("Tableau de bord", "bold"), f" · depuis le {fr_date(dash.since)}")
        )
        self.query_one("#dash-rate", Static).update(rate_text(dash))
        self.query_one("#dash-rate-chart", Sparkline).data = [p.rate * 100 for p in dash.rate]
        agents = self.query_one("#dash-agents", DataTable)
        agents.clear()
        agents.columns[list(agents.columns)[-1]].label = Text(f"Qualif. ({SPAN_WORDS[self.by]})")
        for a in dash.agents:
            agents.add_row(a.agent, str(a.created), str(a.created_qual), pct(a.rate), str(a.qualified))
        channels = self.query_one("#dash-channels", DataTable)
        channels.clear()
        for c in dash.channels:
            channels.add_row(
                CHANNEL_LABELS.get(c.channel, c.channel), str(c.identities), str(c.qual), pct(c.rate)
            )
        self.query_one("#dash-blocked", Static).update(blocked_text(dash))
        self.query_one("#dash-blocked-chart", Sparkline).data = [float(b.blocked) for b in dash.blocked]
        self.refresh_bindings()

    # -- export ------------------------------------------------------------------------------------

    def action_export(self) -> None:
        self.app.push_screen(
            ExportModal("Exporter le tableau de bord", "tableau-de-bord"), callback=self._export_chosen
        )

    def _export_chosen(self, choice: tuple[str, Path] | None) -> None:
        if choice is not None and self.dash is not None:
            self._export(self.by, self.dash.since, choice[0], choice[1])

    @work(thread=True, exclusive=True, exit_on_error=False, group="export")
    def _export(self, by: Period, since: date, fmt: str, path: Path) -> None:
        actor = self.insdesk.actor
        assert actor is not None
        result = export_dashboard(
            self.insdesk.services.db,
            actor=actor,
            fmt=cast(Any, fmt),
            out=path,
            by=by,
            since=since,
            dialect="excel-fr",  # a CSV from the screens opens as is in French Excel
        )
        self.post_message(self.Exported(fmt, result.path, result.events))

    @on(Exported)
    def _exported(self, event: Exported) -> None:
        self.notify(
            f"{thousands(event.rows)} lignes écrites dans {event.path} (export tracé au journal).",
            title=f"Export {event.fmt.upper()}",
        )
