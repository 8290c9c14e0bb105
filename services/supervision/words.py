"""The audit log's words in French: event kinds, INSi answers, status events, capture channels,
fields and flags (the review's summaries, the anomalies' messages, the ``excel-fr`` CSV)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from services.audit import log as audit

__all__ = [
    "CHANNEL_WORDS",
    "CR_WORDS",
    "EVENT_WORDS",
    "FIELD_WORDS",
    "FLAG_WORDS",
    "KIND_LABELS",
    "REVERIFY_WORDS",
]

KIND_LABELS: Final[Mapping[str, str]] = {
    audit.IDENTITY_CREATED: "Création",
    audit.IDENTITY_EDITED: "Modification",
    audit.IDENTITY_STATUS_CHANGED: "Changement de statut",
    audit.IDENTITY_FLAG_SET: "Attribut posé",
    audit.IDENTITY_FLAG_CLEARED: "Attribut retiré",
    audit.IDENTITY_PROOF_ADDED: "Pièce d'identité",
    audit.IDENTITY_DEQUALIFIED: "Déqualification",
    audit.IDENTITY_INS_ATTACHED: "INS rattaché",
    audit.IDENTITY_INS_INVALIDATED: "INS invalidé",
    audit.IDENTITY_DMP_FEEDING: "Opposition au DMP",
    audit.INSI_CALL: "Appel INSi",
    audit.USER_LOGIN: "Connexion",
    audit.USER_LOGIN_FAILED: "Connexion refusée",
    audit.USER_ADDED: "Utilisateur ajouté",
    audit.AUDIT_EXPORTED: "Export du journal",
    audit.AUDIT_VERIFIED: "Vérification de la chaîne",
    audit.DATA_PURGED: "Purge",
    audit.CONFIG_CHANGED: "Configuration modifiée",
}
"""Event kinds in French (screens, the ``excel-fr`` CSV)."""

CR_WORDS: Final[Mapping[str, str]] = {
    "00": "une identité trouvée",
    "01": "aucune identité",
    "02": "plusieurs identités",
}
EVENT_WORDS: Final[Mapping[str, str]] = {
    "insi_match": "vérification INSi",
    "document_checked": "pièce vérifiée",
    "strict_trait_edited": "trait strict modifié",
    "flag_doubtful_or_fictitious": "attribut douteuse/fictive",
    "dequalified": "déqualification",
    "ins_invalidated": "INS invalidé",
}
CHANNEL_WORDS: Final[Mapping[str, str]] = {
    "manual": "saisie manuelle",
    "carte_vitale": "carte Vitale",
    "insi": "téléservice INSi",
    "datamatrix": "DataMatrix INS",
    "apcv": "appli carte Vitale",
}
FIELD_WORDS: Final[Mapping[str, str]] = {
    "birth_name": "nom de naissance",
    "first_names": "prénoms",
    "first_name": "premier prénom",
    "sex": "sexe",
    "birth_date": "date de naissance",
    "birthplace": "lieu de naissance",
    "used_name": "nom utilisé",
    "used_first_name": "prénom utilisé",
    "local_id": "IPP",
}
FLAG_WORDS: Final[Mapping[str, str]] = {"douteuse": "douteuse", "fictive": "fictive", "homonyme": "homonyme"}
REVERIFY_WORDS: Final[Mapping[str, str]] = {
    "traits_differ": "traits différents",
    "ins_differs": "INS différent",
}
