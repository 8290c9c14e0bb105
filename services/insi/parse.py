"""Hardened parsing of INSi answers: ``RESULTAT`` and SOAP 1.2 Faults.

Hardening: a size limit on the body; any DOCTYPE (so any entity, internal or external, and any
"billion laughs" bomb) is refused; lxml runs with ``resolve_entities=False, no_network=True,
load_dtd=False, huge_tree=False``.

Namespace-robust (real answers use the default namespace or ``ns2:``, vary
the element order and omit optional elements): elements are matched by namespace and local
name, never by prefix nor position; inside ``RESULTAT`` an unqualified element is accepted too.
``INSHISTO`` may appear zero or more times, possibly equal to the active INS; ``Prenom`` may be
absent; ``ListePrenom`` is space separated. Traits returned by INSi are authoritative: they go
through :func:`~services.identity.traits.traits_from_insi` (warnings, never a refusal).

Keys (``docs/cli.md``, CNDA TEST_2.08): the **active** matricule must come with its ``Cle`` and
the key must check — otherwise the answer is unusable (a corrupted answer, exit 3, nothing
attached). An ``INSHISTO`` entry whose key is absent or does not check (or whose matricule is not
one) is kept as received with ``key_valid`` false: shown, never used to match anything, and it
does not make the answer unusable.

Every text taken from a fault (codes, messages) is bounded: a server may send anything, and the
codes go to columns of 64 characters.
"""

from __future__ import annotations

import datetime
import functools
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from lxml import etree

from services.errors import FieldIssue, InvalidData
from services.identity.matricule import (
    OID_INS_NIA,
    OID_INS_NIR,
    OID_INS_NIR_DEMO,
    OID_INS_NIR_TEST,
    MatriculeINS,
    compute_key,
)
from services.identity.traits import traits_from_insi
from services.insi.config import DEFAULT_MAX_RESPONSE_BYTES
from services.insi.envelope import NS_RESULTAT, NS_SIRAM, NS_SOAP, NS_SOAP11
from services.insi.errors import InsiFault, InsiProtocolError
from services.insi.exchange import CR_FOUND, KNOWN_CR, InsHistoryEntry, InsiAnswer, InsiIdentity

KNOWN_OIDS = frozenset({OID_INS_NIR, OID_INS_NIA, OID_INS_NIR_TEST, OID_INS_NIR_DEMO})
RETRYABLE_FAULTS = frozenset({"desir_1020"})

_RESULT_NS = (NS_RESULTAT, None)
_SOAP_NS = (NS_SOAP, NS_SOAP11)
_MATRICULE = re.compile(r"[0-9]{5}(?:[0-9]{2}|2[AB])[0-9]{6}", re.ASCII)
_KEY = re.compile(r"[0-9]{2}", re.ASCII)
_XSD_DATE = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2})(?:Z|[+-][0-9]{2}:[0-9]{2})?", re.ASCII)
_OID = re.compile(r"[0-2](?:\.[0-9]+)+", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_CODE_PART = re.compile(r"[a-z0-9_.-]{1,30}", re.ASCII)
CODE_PART_MAX = 30
_DTD_MARKERS = (b"<!doctype", b"<!entity")


# --- hardened XML ----------------------------------------------------------------------------


_PARSERS = threading.local()


def _parser() -> etree.XMLParser:
    """The hardened parser, one per thread (an lxml parser is not to be shared between threads),
    built once: its options never change."""
    parser: etree.XMLParser | None = getattr(_PARSERS, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            huge_tree=False,
            dtd_validation=False,
            remove_comments=True,
            remove_pis=True,
        )
        _PARSERS.parser = parser
    return parser


_REFUSED_DTD = (
    "Réponse INSi refusée : elle contient une déclaration DOCTYPE ou des entités XML, ce qu'un serveur "
    "INSi n'envoie pas (risque de sécurité). Inutile de réessayer : contactez le support informatique."
)


def _has_dtd_marker(body: bytes) -> bool:
    """A DOCTYPE or ENTITY declaration, looked for in UTF-8 and in UTF-16/32 bodies."""
    wide = b"\x00" in body[:4]
    if not wide and b"<!" not in body:  # no declaration of any kind: nothing to lower-case
        return False
    views = [body.lower()]
    if wide:
        for encoding in ("utf-32", "utf-16", "utf-16-le", "utf-16-be"):
            try:
                views.append(body.decode(encoding).lower().encode("utf-8", "replace"))
                break
            except UnicodeDecodeError:
                continue
    return any(marker in view for view in views for marker in _DTD_MARKERS)


def parse_xml(body: bytes, *, max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> etree._Element:
    """Parse untrusted XML: size limit, no DOCTYPE/entities, no network. Raises :class:`InsiProtocolError`."""
    if len(body) > max_bytes:
        raise InsiProtocolError(
            f"Réponse INSi refusée : trop volumineuse ({len(body)} octets, au plus {max_bytes}). "
            "Inutile de réessayer : contactez le support informatique.",
            code="insi_protocol_too_large",
        )
    if not body.strip():
        raise InsiProtocolError(
            "Réponse INSi vide. Vous pouvez réessayer ; si le problème persiste, contactez le support "
            "informatique.",
            code="insi_protocol_empty",
            retryable=True,
        )
    if _has_dtd_marker(body):
        raise InsiProtocolError(_REFUSED_DTD, code="insi_protocol_dtd")
    try:
        root = etree.fromstring(body, _parser())
    except etree.XMLSyntaxError as exc:
        raise InsiProtocolError(
            "Réponse INSi tronquée ou mal formée (XML illisible). Vous pouvez réessayer ; si le problème "
            "persiste, contactez le support informatique.",
            code="insi_protocol_malformed",
            detail=str(exc)[:300],
            retryable=True,
        ) from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise InsiProtocolError(_REFUSED_DTD, code="insi_protocol_dtd")
    for _ in root.iter(etree.Entity):  # an entity reference kept unresolved
        raise InsiProtocolError(_REFUSED_DTD, code="insi_protocol_dtd")
    return root


def looks_like_html(body: bytes, content_type: str | None = None) -> bool:
    """An HTML page (proxy, portal, web server error) rather than a SOAP answer."""
    if content_type and "html" in content_type.lower():
        return True
    head = body[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body"))


# --- element helpers -------------------------------------------------------------------------


def _qname(element: etree._Element) -> tuple[str | None, str]:
    q = etree.QName(element)
    return q.namespace, q.localname


def _elements(parent: etree._Element) -> Iterable[etree._Element]:
    return (child for child in parent if isinstance(child.tag, str))


@functools.cache
def _tags(name: str, namespaces: tuple[str | None, ...]) -> tuple[str, ...]:
    """Clark names for lxml's own filtering (``{}name``: no namespace)."""
    return tuple(f"{{{ns or ''}}}{name}" for ns in namespaces)


def _children(
    parent: etree._Element, name: str, namespaces: tuple[str | None, ...] = _RESULT_NS
) -> list[etree._Element]:
    """The children named ``name`` in ``namespaces``, in document order (lxml filters them in C)."""
    return list(parent.iterchildren(*_tags(name, namespaces)))


def _child(
    parent: etree._Element, name: str, namespaces: tuple[str | None, ...] = _RESULT_NS
) -> etree._Element | None:
    found = _children(parent, name, namespaces)
    return found[0] if found else None


def _text(
    parent: etree._Element | None, name: str, namespaces: tuple[str | None, ...] = _RESULT_NS
) -> str | None:
    if parent is None:
        return None
    element = _child(parent, name, namespaces)
    if element is None or element.text is None:
        return None
    text = element.text.strip()
    return text or None


# The elements of an INSHISTO entry, by Clark name (qualified or unqualified) -> local name: a
# node's children are indexed in one pass (the first of each name in document order wins, as
# with ``_child``) instead of one lxml filtering per looked-up name.
_RESULT_NAMES = ("IdIndividu", "NumIdentifiant", "Cle", "OID", "DateDeb", "DateFin")
_RESULT_TAGS = {tag: name for name in _RESULT_NAMES for tag in (f"{{{NS_RESULTAT}}}{name}", name)}


def _index(parent: etree._Element | None) -> dict[str, etree._Element]:
    """The children of ``parent`` in the RESULTAT namespace (or none) by local name, first wins."""
    found: dict[str, etree._Element] = {}
    if parent is None:
        return found
    for child in parent:
        name = _RESULT_TAGS.get(child.tag)  # a comment's tag is a function: no match
        if name is not None and name not in found:
            found[name] = child
    return found


_HISTORY = "INDIVIDU/INSHISTO"
# What RESULTAT holds, container by container: the child elements read (by local name) inside each.
_LAYOUT = {
    "": ("CR", "INDIVIDU"),
    "CR": ("CodeCR", "LibelleCR"),
    "INDIVIDU": ("INSACTIF", "INSHISTO", "TIQ"),
    "INDIVIDU/INSACTIF": ("IdIndividu", "OID", "DateDeb", "DateFin"),
    "INDIVIDU/INSACTIF/IdIndividu": ("NumIdentifiant", "Cle"),
    "INDIVIDU/TIQ": ("NomNaissance", "Prenom", "ListePrenom", "Sexe", "DateNaissance", "LieuNaissance"),
}
# Container path -> {Clark name of a child, qualified or unqualified -> the child's path}.
_STEPS = {
    container: {
        tag: f"{container}/{name}".lstrip("/") for name in names for tag in (f"{{{NS_RESULTAT}}}{name}", name)
    }
    for container, names in _LAYOUT.items()
}


def _collect(
    parent: etree._Element, steps: dict[str, str], texts: dict[str, str], history: list[etree._Element]
) -> None:
    """RESULTAT's elements in one walk: ``texts`` maps each path of local names (``CR/CodeCR``) to
    the stripped text of its first element in document order ("" when blank: present, no value);
    ``history`` gets every ``INDIVIDU/INSHISTO``. Only the known containers are entered."""
    for child in parent:
        path = steps.get(child.tag)  # a comment's tag is a function: no match
        if path is None or path in texts:
            continue
        if path == _HISTORY:
            history.append(child)
            continue
        text = child.text
        texts[path] = text.strip() if text is not None else ""
        inner = _STEPS.get(path)
        if inner is not None:
            _collect(child, inner, texts, history)


def _value(index: dict[str, etree._Element], name: str) -> str | None:
    """The stripped text of ``index[name]``, None when absent or blank (as ``_text``)."""
    element = index.get(name)
    if element is None:
        return None
    text = element.text
    if text is None:
        return None
    text = text.strip()
    return text or None


def _unexpected(message: str, *, detail: str | None = None) -> InsiProtocolError:
    return InsiProtocolError(
        f"Réponse INSi inattendue : {message} Inutile de réessayer tel quel : si le problème persiste, "
        "contactez le support informatique.",
        code="insi_protocol_unexpected",
        detail=detail,
    )


def _clean(text: str | None, limit: int = 300) -> str:
    value = _CONTROL.sub(" ", text or "").strip()
    return value if len(value) <= limit else value[: limit - 1] + "…"


# --- RESULTAT --------------------------------------------------------------------------------


def _date(value: str | None, what: str) -> datetime.date | None:
    if value is None:
        return None
    match = _XSD_DATE.fullmatch(value)
    try:
        if match is None:
            raise ValueError(value)
        return datetime.date.fromisoformat(match.group(1))
    except ValueError:
        raise _unexpected(f"date {what} illisible.", detail=_clean(value, 40)) from None


def _matricule(number: str | None, key: str | None, what: str) -> MatriculeINS:
    """The active matricule: present, well formed, with its key, and the key checks."""
    if number is None:
        raise _unexpected(f"le matricule {what} est absent.")
    number = number.upper()
    if not _MATRICULE.fullmatch(number):
        raise _unexpected(f"le matricule {what} n'a pas le format attendu (13 caractères).")
    try:
        expected = compute_key(number)
    except InvalidData:
        raise _unexpected(f"le matricule {what} n'a pas le format attendu.") from None
    if key is None:
        raise _unexpected(f"la clé (Cle) du matricule {what} est absente : la réponse est inutilisable.")
    if not _KEY.fullmatch(key) or key != expected:
        raise _unexpected(f"la clé du matricule {what} ne correspond pas au matricule (réponse altérée ?).")
    return MatriculeINS(number, key)


def _oid(oid: str | None, what: str) -> str:
    if oid is None or not _OID.fullmatch(oid) or len(oid) > 64:
        raise _unexpected(f"OID absent ou illisible ({what}).", detail=_clean(oid, 60))
    return oid


def _history_entry(element: etree._Element) -> InsHistoryEntry:
    """An ``INSHISTO`` entry: a key that is absent or does not check (or a matricule that is not
    one) keeps the entry, marked ``key_valid`` false (CNDA TEST_2.08); its texts are bounded."""
    fields = _index(element)
    ident_fields = _index(fields.get("IdIndividu"))
    number = (_value(ident_fields, "NumIdentifiant") or "").upper()
    key = _value(ident_fields, "Cle")
    valid = False
    if _MATRICULE.fullmatch(number) and key is not None and _KEY.fullmatch(key):
        try:
            valid = compute_key(number) == key
        except InvalidData:
            valid = False
    oid = _value(fields, "OID") or ""
    if not valid:
        return InsHistoryEntry(
            MatriculeINS(_clean(number, 20), _clean(key, 4)),
            _clean(oid, 64),
            _lenient_date(_value(fields, "DateDeb")),
            _lenient_date(_value(fields, "DateFin")),
            key_valid=False,
        )
    return InsHistoryEntry(
        MatriculeINS(number, key or ""),
        _oid(oid, "historique"),
        _date(_value(fields, "DateDeb"), "de début"),
        _date(_value(fields, "DateFin"), "de fin"),
    )


def _lenient_date(value: str | None) -> datetime.date | None:
    try:
        return _date(value, "")
    except InsiProtocolError:
        return None


def _identity(texts: dict[str, str], entries: list[etree._Element]) -> InsiIdentity:
    if "INDIVIDU/INSACTIF" not in texts:
        raise _unexpected("INSACTIF absent d'une réponse 00.")
    if "INDIVIDU/INSACTIF/IdIndividu" not in texts:
        raise _unexpected("IdIndividu absent (actif).")
    matricule = _matricule(
        texts.get("INDIVIDU/INSACTIF/IdIndividu/NumIdentifiant") or None,
        texts.get("INDIVIDU/INSACTIF/IdIndividu/Cle") or None,
        "actif",
    )
    oid = _oid(texts.get("INDIVIDU/INSACTIF/OID") or None, "actif")
    valid_from = _date(texts.get("INDIVIDU/INSACTIF/DateDeb") or None, "de début")
    valid_to = _date(texts.get("INDIVIDU/INSACTIF/DateFin") or None, "de fin")
    history = [_history_entry(entry) for entry in entries]

    if "INDIVIDU/TIQ" not in texts:
        raise _unexpected("traits d'identité (TIQ) absents d'une réponse 00.")
    birth_name = texts.get("INDIVIDU/TIQ/NomNaissance") or None
    first_name = texts.get("INDIVIDU/TIQ/Prenom") or None
    first_names = texts.get("INDIVIDU/TIQ/ListePrenom") or first_name
    sex = texts.get("INDIVIDU/TIQ/Sexe") or None
    birth_date = texts.get("INDIVIDU/TIQ/DateNaissance") or None
    missing = [
        label
        for label, value in (
            ("nom de naissance", birth_name),
            ("prénoms", first_names),
            ("sexe", sex),
            ("date de naissance", birth_date),
        )
        if value is None
    ]
    if missing or birth_name is None or first_names is None or sex is None or birth_date is None:
        raise _unexpected(f"trait(s) absent(s) de la réponse : {', '.join(missing)}.")
    try:
        traits, warnings = traits_from_insi(
            birth_name=birth_name,
            first_names=first_names,
            sex=sex,
            birth_date=birth_date,
            first_name=first_name,
            birthplace=texts.get("INDIVIDU/TIQ/LieuNaissance") or None,
        )
    except InvalidData as exc:
        raise _unexpected(exc.message) from None
    warnings = list(warnings)
    for entry in history:
        if not entry.key_valid:
            warnings.append(
                FieldIssue(
                    "history",
                    "Un ancien matricule (historique INSi) a une clé absente ou incorrecte : il est "
                    "conservé tel que reçu mais n'est utilisé pour aucun rapprochement.",
                )
            )
    if oid not in KNOWN_OIDS:
        warnings.append(FieldIssue("oid", f"OID renvoyé par l'INSi inhabituel : {oid}."))
    return InsiIdentity(matricule, oid, valid_from, valid_to, traits, history, warnings)


def parse_resultat(resultat: etree._Element) -> InsiAnswer:
    """A ``RESULTAT`` element (any prefix) into an :class:`InsiAnswer`."""
    texts: dict[str, str] = {}
    history: list[etree._Element] = []
    _collect(resultat, _STEPS[""], texts, history)
    code = texts.get("CR/CodeCR") or None
    if code is None:
        raise _unexpected("compte rendu (CodeCR) absent.")
    if code not in KNOWN_CR:
        raise _unexpected(f"code de compte rendu inconnu « {_clean(code, 10)} ».")
    label = _clean(texts.get("CR/LibelleCR"))
    if code == CR_FOUND:
        if "INDIVIDU" not in texts:
            raise _unexpected("réponse 00 sans identité (INDIVIDU absent).")
        return InsiAnswer(code, label, _identity(texts, history))
    return InsiAnswer(code, label, None)


# --- faults ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _FaultAdvice:
    headline: str
    advice: str


_FAULT_ADVICE = {
    "desir_1020": _FaultAdvice(
        "Le service INSi est momentanément indisponible.",
        "Réessayez dans quelques minutes.",
    ),
    "desir_550": _FaultAdvice(
        "L'INSi ne reconnaît pas le numéro d'autorisation (IDAM) de ce logiciel.",
        "Vérifiez le numéro d'autorisation dans la configuration INSi ou contactez l'éditeur du logiciel ; "
        "inutile de réessayer avant.",
    ),
    "desir_560": _FaultAdvice(
        "Certificat de l'établissement refusé par le serveur INSi : son nom (CN) n'est pas accepté.",
        "Installez le certificat logiciel IGC-Santé de l'établissement (CN INSI-AUTO ou INSI-MANU) ; "
        "inutile de réessayer avant.",
    ),
    "insi_102": _FaultAdvice(
        "Erreur technique du service INSi.",
        "Inutile de relancer aussitôt : si l'erreur se répète, signalez-la au support informatique.",
    ),
}
_GENERIC_ADVICE = _FaultAdvice(
    "L'INSi a refusé la demande.",
    "Inutile de réessayer telle quelle : vérifiez les données saisies ; si l'erreur se répète, contactez "
    "le support informatique.",
)


def _local_value(text: str | None) -> str | None:
    """``soap:siram_100`` -> ``siram_100`` (a QName as text), bounded for the record."""
    if not text:
        return None
    return _clean(text.strip().rsplit(":", 1)[-1], 60) or None


def _code_part(text: str | None, unreadable: str) -> str | None:
    """A fault code as the record and the JSON keep it: ``siram_40``, ``desir_1020``...; anything
    else (a 10 kB code, characters outside ``a-z0-9_.-``) becomes ``unreadable``: the text as
    received stays in the stored answer and, shortened, in ``detail``."""
    if not text:
        return None
    value = text.strip().lower()
    return value if _CODE_PART.fullmatch(value) else unreadable


def _reason(fault: etree._Element) -> str | None:
    reason = _child(fault, "Reason", (NS_SOAP,))
    if reason is None:
        return _text(fault, "faultstring", (None, NS_SOAP11))  # SOAP 1.1
    texts = _children(reason, "Text", (NS_SOAP,))
    for text in texts:
        if (text.get("{http://www.w3.org/XML/1998/namespace}lang") or "").lower().startswith("fr"):
            return str(text.text or "")
    return str(texts[0].text or "") if texts else None


def fault_from_element(fault: etree._Element) -> InsiFault:
    """A SOAP Fault element (1.2, or 1.1 for robustness) into an :class:`InsiFault`.

    ``code`` is ``siram_NN/desir_NNNN`` (lowercase), from ``Code/Subcode/Value`` and
    ``Detail/siram:Erreur/@code``.
    """
    code_element = _child(fault, "Code", (NS_SOAP,))
    subcode_value: str | None = None
    top_value: str | None = None
    if code_element is not None:
        top_value = _local_value(_text(code_element, "Value", (NS_SOAP,)))
        subcode = _child(code_element, "Subcode", (NS_SOAP,))
        if subcode is not None:
            subcode_value = _local_value(_text(subcode, "Value", (NS_SOAP,)))
    else:
        top_value = _local_value(_text(fault, "faultcode", (None, NS_SOAP11)))
    detail = _child(fault, "Detail", (NS_SOAP,))
    if detail is None:
        detail = _child(fault, "detail", (None, NS_SOAP11))
    erreur = None
    if detail is not None:
        erreur = next((e for e in detail.iter() if isinstance(e.tag, str) and _qname(e)[1] == "Erreur"), None)
        if erreur is not None and _qname(erreur)[0] not in (NS_SIRAM, None):
            erreur = None
    error_code = _code_part(erreur.get("code"), "code_illisible") if erreur is not None else None
    severity = _clean(erreur.get("severite"), 40) or None if erreur is not None else None
    message_id = _clean(erreur.get("messageID"), 100) or None if erreur is not None else None
    error_text = _clean(erreur.text) if erreur is not None else ""

    siram = (
        _code_part(subcode_value, "siram_illisible")
        if subcode_value and subcode_value.lower().startswith("siram")
        else None
    )
    parts = [p for p in (siram, error_code) if p]
    code = "/".join(parts) if parts else "soap_fault"
    reason = _clean(_reason(fault))
    server_message = " ".join(p for p in (reason, error_text) if p)
    known = _FAULT_ADVICE.get(error_code or "", _GENERIC_ADVICE)
    message = f"{known.headline} {known.advice} (erreur INSi {code}"
    message += f" : « {server_message} »)" if server_message else ")"
    return InsiFault(
        message,
        code=code,
        siram_code=siram,
        error_code=error_code,
        severity=severity,
        server_message=server_message,
        retryable=error_code in RETRYABLE_FAULTS,
        message_id=message_id,
        detail=f"SOAP fault {top_value or '?'} / {subcode_value or '?'}: {server_message}",
    )


# --- whole answers ---------------------------------------------------------------------------


_ENVELOPE_BODY = {f"{{{ns}}}Envelope": f"{{{ns}}}Body" for ns in _SOAP_NS}
_FAULT_TAGS = frozenset(f"{{{ns}}}Fault" for ns in _SOAP_NS)
_RESULTAT_TAG = f"{{{NS_RESULTAT}}}RESULTAT"


def _first(parent: etree._Element, tag: str) -> etree._Element | None:
    for child in parent:
        if child.tag == tag:
            return child
    return None


def _body(root: etree._Element) -> etree._Element:
    body_tag = _ENVELOPE_BODY.get(root.tag)
    if body_tag is None:
        ns, local = _qname(root)
        raise _unexpected("ce n'est pas une enveloppe SOAP.", detail=f"root {{{ns}}}{local}")
    body = _first(root, body_tag)
    if body is None:
        raise _unexpected("enveloppe SOAP sans corps (Body).")
    return body


def find_fault(root: etree._Element) -> etree._Element | None:
    """The SOAP Fault of a parsed envelope, if any."""
    body_tag = _ENVELOPE_BODY.get(root.tag)
    if body_tag is None:
        return None
    body = _first(root, body_tag)
    return _first(body, body_tag[: -len("Body")] + "Fault") if body is not None else None


def answer_from_envelope(root: etree._Element) -> InsiAnswer:
    """A parsed envelope into an answer; raises :class:`InsiFault` when it carries a Fault."""
    body = _body(root)
    fault = resultat = None
    for child in body:
        tag = child.tag
        if tag in _FAULT_TAGS:
            fault = child
            break
        if resultat is None and tag == _RESULTAT_TAG:
            resultat = child
    if fault is not None:
        raise fault_from_element(fault)
    if resultat is None:  # wrapped in some other element
        resultat = next(body.iter(_RESULTAT_TAG), None)
    if resultat is None:
        raise _unexpected("ni résultat (RESULTAT) ni erreur SOAP dans la réponse.")
    return parse_resultat(resultat)


def parse_response(body: bytes, *, max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> InsiAnswer:
    """Parse an INSi answer body; raises :class:`InsiFault` (a SOAP Fault) or
    :class:`InsiProtocolError` (malformed, unexpected, DTD/entities, too large)."""
    return answer_from_envelope(parse_xml(body, max_bytes=max_bytes))
