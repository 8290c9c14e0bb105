"""The checks of ``insdesk doctor`` in French words, for the terminal (``tui.cli.commands.doctor``)
and the « Configuration » screen (``tui.screens.configuration``): section titles and the facts of
each section (docs/cli.md, doctor)."""

from __future__ import annotations

from typing import Any

from tui.format import short_database

SECTION_TITLES = {
    "database": "Base de données",
    "insi": "Téléservice INSi",
    "reader": "Lecteur de carte Vitale",
    "audit": "Chaîne d'audit",
    "outbox": "Envoi des comptes rendus",
    "lab": "Identité du laboratoire (CDA)",
    "documents": "Pièces d'identité acceptées",
}


def facts_lines(name: str, data: dict[str, Any], *, short: bool = False) -> list[str]:
    """The facts of one section, for people (the terminal; ``short``: the screen, the database
    named by its file or host)."""
    lines: list[str] = []
    if name == "database":
        url = str(data.get("url"))
        lines.append(f"Base : {short_database(url)}" if short else f"URL : {url}")
        if data.get("schema") or data.get("schema_expected"):
            lines.append(f"Schéma : {data.get('schema') or 'vide'} (attendu {data.get('schema_expected')})")
    elif name == "insi":
        if data.get("endpoint"):
            source = {"option": "option", "environment": "environnement", "setting": "réglage"}.get(
                str(data.get("source")), str(data.get("source"))
            )
            lines.append(f"Adresse : {data['endpoint']} ({source})")
            lines.append(f"Environnement : {data.get('environment') or 'non déclaré'}")
        if data.get("idam"):
            lines.append(f"IDAM : {data['idam']}")
        cert = data.get("certificate")
        if isinstance(cert, dict) and cert.get("subject"):
            lines.append(f"Certificat : {cert['subject']}")
            lines.append(f"Expire le : {cert.get('expires')} ({cert.get('days_left')} jours)")
        elif isinstance(cert, dict) and cert.get("file"):
            lines.append(f"Certificat : {cert['file']}")
    elif name == "reader":
        if data.get("setting"):
            lines.append(f"Réglage : {data['setting']}")
        for reader in data.get("readers") or []:
            card = {True: "carte insérée", False: "pas de carte", None: ""}[reader.get("card")]
            lines.append(f"• {reader['name']}" + (f" ({card})" if card else ""))
    elif name == "audit":
        if data.get("events") is not None:
            lines.append(f"Évènements : {data['events']}")
    elif name == "outbox":
        if data.get("kind") == "dmp":
            lines.append(f"DMP : {data.get('url') or '(dmp.url non réglé)'}")
            if data.get("structure_id"):
                lines.append(f"Structure : {data.get('structure_name')} ({data['structure_id']})")
            for key, label in (("seal", "Cachet"), ("tls", "Authentification")):
                cert = (data.get("certificates") or {}).get(key)
                if cert:
                    lines.append(f"{label} : {cert.get('subject')} (expire le {cert.get('expires')})")
            if "http_status" in data:
                lines.append(f"Réponse : HTTP {data['http_status']}")
        elif data.get("folder"):
            lines.append(f"{data.get('kind')} : {data['folder']}")
    elif name == "lab":
        if data.get("name"):
            lines.append(f"{data['name']} · {data.get('id')}")
            lines.append(f"Biologiste : {data.get('biologist')} (RPPS {data.get('biologist_rpps')})")
    elif name == "documents":
        lines.append(", ".join(data.get("types") or []))
    return lines
