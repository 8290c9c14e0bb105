"""The App's own keys (F2…F12, ?, ^P, ^X, ^K, ^Q), with ids and French tooltips.

Apart from ``tui.app`` so that ``tui.keymap`` can list every binding id of the desk (to check a
user's ``keymap.toml``) without importing the App: the App imports the keymap, not the reverse.
"""

from __future__ import annotations

from textual.binding import Binding, BindingType

APP_BINDINGS: list[BindingType] = [
    Binding("f2,ctrl+n", "new_identity", "Nouveau", id="app.new", tooltip="Créer une nouvelle identité"),
    Binding(
        "f3,ctrl+l",
        "read_card",
        "Carte Vitale",
        id="app.card",
        tooltip="Lire la carte Vitale et choisir le bénéficiaire",
    ),
    Binding("f4,ctrl+o", "insi", "INSi", id="app.insi", tooltip="Interroger le téléservice INSi"),
    Binding(
        "f5,ctrl+e", "proof", "Pièce", id="app.proof", tooltip="Enregistrer la pièce d'identité vérifiée"
    ),
    Binding("f6,ctrl+y", "history", "Historique", id="app.history", tooltip="Historique de l'identité"),
    Binding(
        "f7,ctrl+g",
        "flags",
        "Attributs",
        id="app.flags",
        tooltip="Attributs de l'identité (douteuse, fictive, homonyme), déqualification",
    ),
    Binding(
        "f8,ctrl+f",
        "results",
        "Résultats",
        id="app.results",
        tooltip="Résultats bloqués pour Mon Espace Santé",
    ),
    Binding(
        "f9,ctrl+z",
        "review_log",
        "Journal",
        id="app.review_log",
        tooltip="Journal d'identitovigilance : anomalies, évènements, échanges INSi",
    ),
    Binding(
        "f10,ctrl+t",
        "dashboard",
        "Tableau de bord",
        id="app.dashboard",
        tooltip="Tableau de bord : taux de qualification, agents, canaux, résultats bloqués",
    ),
    Binding(
        "f12,ctrl+b",
        "duplicates",
        "Doublons",
        id="app.duplicates",
        tooltip="Doublons possibles et fusion d'identités (identitovigilance)",
    ),
    Binding(
        "question_mark,f1",
        "help",
        "Aide",
        id="app.help",
        tooltip="Les touches de l'écran",
        key_display="?",
        priority=True,
    ),
    Binding(
        "ctrl+p",
        "command_palette",
        "Commandes",
        id="app.palette",
        tooltip="Chercher une action par son nom",
        priority=True,
    ),
    Binding(
        "ctrl+x",
        "lock",
        "Verrouiller",
        id="app.lock",
        tooltip="Verrouiller le poste ou changer d'utilisateur",
        priority=True,  # ctrl+x: « couper » in a field otherwise
        show=False,
    ),
    Binding(
        "ctrl+k",
        "configuration",
        "Configuration",
        id="app.configuration",
        tooltip="Configuration de l'installation (administrateur)",
        priority=True,  # ctrl+k: « effacer jusqu'à la fin » in a field otherwise
        show=False,
    ),
    Binding("ctrl+q", "quit", "Quitter", id="app.quit", tooltip="Quitter insdesk", priority=True),
]
