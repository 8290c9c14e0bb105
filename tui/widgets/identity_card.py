"""The side pane of the home screen: the selected identity at a glance."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from tui.summary import IdentitySummary
from tui.widgets.badge import FlagTags, StatusBadge

FEEDING_LINES = {
    "opposed": "DMP : le patient s'oppose à son alimentation\n(comptes rendus non envoyés)",
    "not_opposed": "DMP : le patient ne s'oppose pas",
}
"""The side pane's line on the DMP (nothing while the answer has not been recorded)."""


class IdentityCard(VerticalScroll):
    """Status badge, flags, birth, IPP, INS + OID (only when present), last proof, the patient's
    answer about feeding the DMP (once recorded)."""

    can_focus = False

    def compose(self) -> ComposeResult:
        yield Static("Aucune identité sélectionnée", id="card-title")
        yield StatusBadge(id="card-badge")
        yield FlagTags(id="card-flags")
        yield Static("", id="card-birth")
        yield Static("", id="card-local-id")
        yield Static("", id="card-ins")
        yield Static("", id="card-proof")
        yield Static("", id="card-dmp")

    def on_mount(self) -> None:
        self.query_one("#card-dmp", Static).display = False
        self.show(None)

    def show(self, summary: IdentitySummary | None) -> None:
        self.summary = summary
        title = self.query_one("#card-title", Static)
        badge = self.query_one("#card-badge", StatusBadge)
        flags = self.query_one("#card-flags", FlagTags)
        if summary is None:
            title.update("Aucune identité sélectionnée")
            badge.set_status(None)
            flags.set_flags(())
            for wid in ("#card-birth", "#card-local-id", "#card-ins", "#card-proof", "#card-dmp"):
                self.query_one(wid, Static).update("")
            return
        title.update(summary.title)
        badge.set_status(summary.status)
        flags.set_flags(summary.flags)
        born = "Née le" if summary.sex == "F" else "Né le" if summary.sex == "M" else "Né(e) le"
        place = ""
        if summary.birthplace:
            place = (
                f"\nà {summary.birthplace_name} ({summary.birthplace})"
                if summary.birthplace_name
                else (f"\nà {summary.birthplace}")
            )
        self.query_one("#card-birth", Static).update(f"{born} {summary.birth_date_text}{place}")
        self.query_one("#card-local-id", Static).update(
            f"IPP : {summary.local_id}" if summary.local_id else ""
        )
        ins = ""
        if summary.ins:
            ins = f"INS {summary.ins}"
            if summary.oid:
                ins += f"\nOID {summary.oid}\n({summary.oid_label})"
            if not summary.ins_usable:
                ins += "\nINS non transmissible : identité non qualifiée"
        self.query_one("#card-ins", Static).update(ins)
        self.query_one("#card-proof", Static).update(summary.last_proof or "Aucune pièce d'identité vérifiée")
        dmp = self.query_one("#card-dmp", Static)
        dmp.update(FEEDING_LINES.get(summary.feeding, ""))
        dmp.display = summary.feeding in FEEDING_LINES
