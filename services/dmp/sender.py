"""The DMP sender: TD2 / TD2.1 (ITI-41), TD3.1b (ITI-18 by uniqueId), TD3.3c (ITI-57 → Deleted).

:class:`DmpSender` fits the outbox's ``ReportSender`` protocol (``services/results/outbox.py``):
``send(document)`` returns a reference or raises. The outcomes (``services.dmp.errors``):

- the DMP's ``Success`` → a :class:`DmpReceipt` (``send`` returns its ``reference``);
- ``Failure`` with a ``RegistryErrorList`` → :class:`DmpRefused` (exit 1) carrying the DMP code in
  French (``DMPClosed``…): the report is refused, the run goes on with the next one;
- transport, TLS, HTTP error, SOAP ``Receiver`` fault, unreadable answer → :class:`DmpUnavailable`
  (exit 3, nothing registered); a VIHF/certificate fault → :class:`DmpSecurityRefused` (exit 3).

**Bounded retry** (``config.max_attempts``, linear back-off): only when the request provably did
not reach the DMP (connection refused or timed out) or the DMP said it did not process it
(HTTP 503); a query (ITI-18, idempotent) is also retried after a read timeout. A document
submission whose answer was lost is *not* retried here.

**Never sent twice**: a document is identified by its CDA ``id`` (XDS ``uniqueId``). If a previous
attempt was registered but its answer lost (or the local commit failed), the DMP answers
``XDSDuplicateUniqueIdInRegistry``; the sender then reads the registered entry (ITI-18): same
hash and size → the earlier submission is the one, the receipt says ``already_present``; a
different content under the same id is refused.

**Replacement** (TD2.1): a CDA with ``relatedDocument typeCode="RPLC"`` replaces the document whose
uniqueId it names: the sender finds that entry's ``entryUUID`` (ITI-18) and adds the XDS ``RPLC``
association. If the replaced version is not (or no longer) in the DMP — never sent, withdrawn — the
new version goes as an initial document.

**Withdrawal** (TD3.3c): :meth:`DmpSender.withdraw` finds the entry and sends ITI-57
``UpdateAvailabilityStatus`` Approved → ``urn:asip:ci-sis:2010:StatusType:Deleted``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ssl
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import httpx
from cryptography import x509
from lxml import etree

from services.dmp import codes as c
from services.dmp import ebrim, mtom
from services.dmp.cda_header import CdaHeader, CdaHeaderError, read_header
from services.dmp.config import ENV_SIGN_CERT, DmpConfig, SigningKey, load_certificate, load_signing_key
from services.dmp.dsg import sign_submission_set
from services.dmp.errors import (
    DmpConfigError,
    DmpRefused,
    DmpSecurityRefused,
    DmpUnavailable,
    RegistryError,
)
from services.dmp.exchange import DmpExchange
from services.dmp.schemas import RequestSchemas
from services.dmp.soap import Answer, AnswerError, RegistryEntry, envelope, parse_answer
from services.dmp.vihf import VihfClaims, build_vihf, roles_from_specialty

_SECURITY_SUBCODES = ("InvalidSecurity", "FailedAuthentication", "InvalidSecurityToken", "FailedCheck")


class DocumentToSend(Protocol):
    """What the sender needs of a document (``services.results.outbox.OutgoingDocument`` fits)."""

    @property
    def xml(self) -> bytes: ...

    @property
    def patient_ins(self) -> str: ...

    @property
    def patient_ins_oid(self) -> str: ...

    @property
    def document_id(self) -> str: ...


@dataclass(frozen=True)
class DmpReceipt:
    """The DMP's acceptance of a submission or an update."""

    transaction: str  # ITI-41 | ITI-57
    unique_id: str
    submission_set_uid: str | None = None
    replaced_unique_id: str | None = None
    replaced_entry_uuid: str | None = None
    entry_uuid: str | None = None
    already_present: bool = False
    masking: tuple[str, ...] = ()
    exchanges: tuple[DmpExchange, ...] = field(default_factory=tuple)

    @property
    def reference(self) -> str:
        return f"dmp:{self.submission_set_uid or self.unique_id}"

    def as_dict(self) -> dict[str, object]:
        return {
            "transaction": self.transaction,
            "unique_id": self.unique_id,
            "submission_set_uid": self.submission_set_uid,
            "replaced_unique_id": self.replaced_unique_id,
            "replaced_entry_uuid": self.replaced_entry_uuid,
            "entry_uuid": self.entry_uuid,
            "already_present": self.already_present,
            "masking": list(self.masking),
        }


def _oid() -> str:
    return f"2.25.{uuid.uuid4().int}"


def _dtm(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y%m%d%H%M%S")


def _refusal(errors: tuple[RegistryError, ...], what: str) -> DmpRefused:
    first = errors[0] if errors else RegistryError(code="XDSRegistryError")
    base = c.ERROR_MESSAGES.get(first.code, f"Le DMP a refusé {what} (code {first.code}).")
    context = f" ({first.context})" if first.context and first.code != "DMPClosed" else ""
    return DmpRefused(
        base + context,
        code=first.code or "dmp_refused",
        errors=errors,
        detail="; ".join(f"{e.code}: {e.context}" for e in errors),
    )


def _is_tls_error(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "SSL" in str(exc) or "certificate" in str(exc).lower()


class DmpSender:
    """Sends CR-BIO documents to the DMP (``name = "dmp"``); reuse one instance, then :meth:`close`."""

    name = "dmp"

    def __init__(
        self,
        config: DmpConfig,
        *,
        client: httpx.Client | None = None,
        clock: Callable[[], dt.datetime] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        validate_requests: bool = True,
    ) -> None:
        config.check()
        self.config = config
        self._cert: x509.Certificate = load_certificate(
            config.sign_cert, "Certificat de cachet", ENV_SIGN_CERT
        )
        self._key: SigningKey = load_signing_key(config.sign_key, config.sign_key_password, self._cert)
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._sleep = sleep
        self._validate = validate_requests
        self._own_client = client is None
        if client is None:
            verify: ssl.SSLContext | bool = True
            if config.uses_tls:
                from services.dmp.tls import client_context

                verify = client_context(config)
            client = httpx.Client(
                verify=verify,
                timeout=httpx.Timeout(config.timeout, connect=config.connect_timeout),
                trust_env=False,
                follow_redirects=False,
            )
        self._client = client

    # -- life cycle --------------------------------------------------------------------------

    def close(self) -> None:
        if self._own_client:
            self._client.close()

    def __enter__(self) -> DmpSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the ReportSender protocol -----------------------------------------------------------

    def send(self, document: DocumentToSend, *, masking: Iterable[str] = ()) -> str:
        """Sends (or replaces) one document; returns the reference of the DMP's acceptance."""
        return self.submit(document, masking=masking).reference

    # -- transactions ------------------------------------------------------------------------

    def submit(self, document: DocumentToSend, *, masking: Iterable[str] = ()) -> DmpReceipt:
        """ITI-41 for one CR-BIO (TD2, or TD2.1 when it replaces an earlier version)."""
        masks = tuple(sorted(set(masking)))
        unknown = [m for m in masks if m not in c.MASKING_CODES]
        if unknown:
            raise DmpConfigError(
                f"Code de masquage inconnu : {', '.join(unknown)} "
                f"(possibles : {', '.join(c.MASKING_CODES)}).",
                code="dmp_masking",
            )
        header = self._header(document)
        exchanges: list[DmpExchange] = []
        replaced: RegistryEntry | None = None
        try:
            if header.replaces:
                found = self._find(header, header.replaces, exchanges)
                if found is not None and found.status == c.STATUS_APPROVED:
                    replaced = found
            receipt = self._provide_and_register(header, document.xml, masks, replaced, exchanges)
        except (DmpRefused, DmpUnavailable) as err:
            err.exchanges = list(exchanges)
            raise
        return receipt

    def withdraw(self, document: DocumentToSend) -> DmpReceipt:
        """ITI-57: the sent document becomes ``Deleted`` in the DMP (idempotent)."""
        header = self._header(document)
        exchanges: list[DmpExchange] = []
        try:
            entry = self._find(header, header.unique_id, exchanges)
            if entry is None:
                raise DmpRefused(
                    "Ce compte rendu n'est pas dans le DMP : rien à supprimer.",
                    code="UnresolvedReferenceException",
                )
            if entry.status == c.STATUS_DELETED:
                return DmpReceipt(
                    transaction="ITI-57",
                    unique_id=header.unique_id,
                    entry_uuid=entry.entry_uuid,
                    already_present=True,
                    exchanges=tuple(exchanges),
                )
            if entry.status != c.STATUS_APPROVED:
                raise DmpRefused(
                    "Une version plus récente de ce compte rendu la remplace dans le DMP : "
                    "supprimez la dernière "
                    "version envoyée.",
                    code="XDSMetadataUpdateError",
                )
            now = self._clock()
            set_uid = _oid()
            body = ebrim.update_availability(
                entry_uuid=entry.entry_uuid,
                submission_set_uid=set_uid,
                source_oid=self.config.submission_source_oid,
                patient_id=ebrim.patient_id_of(header),
                author=ebrim.author_of(header),
                submission_time=_dtm(now),
                title=f"Suppression : {header.title}",
            )
            answer = self._call(
                "ITI-57", c.ACTION_ITI57, self.config.registry_url, body, header, exchanges, idempotent=False
            )
            if not answer.success:
                raise _refusal(answer.errors, "la suppression")
        except (DmpRefused, DmpUnavailable) as err:
            err.exchanges = list(exchanges)
            raise
        return DmpReceipt(
            transaction="ITI-57",
            unique_id=header.unique_id,
            submission_set_uid=set_uid,
            entry_uuid=entry.entry_uuid,
            exchanges=tuple(exchanges),
        )

    def find(self, document: DocumentToSend, unique_id: str | None = None) -> RegistryEntry | None:
        """ITI-18 GetDocuments: the DMP's entry for ``unique_id`` (default: this document's), or None."""
        header = self._header(document)
        return self._find(header, unique_id or header.unique_id, [])

    # -- internals ---------------------------------------------------------------------------

    def _header(self, document: DocumentToSend) -> CdaHeader:
        header = read_header(document.xml)
        if not header.is_cr_bio:
            raise CdaHeaderError(
                "Ce document n'est pas un CR-BIO (modèle XD-LAB absent) : non envoyé au DMP."
            )
        if (header.patient_ins, header.patient_ins_oid) != (document.patient_ins, document.patient_ins_oid):
            raise CdaHeaderError(
                "L'INS du document CDA n'est pas celui du compte rendu : non envoyé au DMP.",
                code="dmp_ins_mismatch",
            )
        if header.unique_id != document.document_id:
            raise CdaHeaderError(
                "Identifiant du document CDA incohérent : non envoyé.", code="dmp_document_id"
            )
        return header

    def _claims(self, header: CdaHeader) -> VihfClaims:
        config = self.config
        return VihfClaims(
            structure_id=config.structure_id,
            sector=config.sector,
            subject_name_id=header.author.id_extension,
            subject_label=f"{config.software_name}, envoi des comptes rendus, {config.structure_name}",
            patient_ins=header.patient_ins,
            patient_ins_oid=header.patient_ins_oid,
            roles=roles_from_specialty(header.author_specialty.code if header.author_specialty else None),
            software_name=config.software_name,
            software_version=config.software_version,
            software_id=config.submission_source_oid,
            homologation_id=config.homologation_id,
            version=config.vihf_version,
        )

    def _provide_and_register(
        self,
        header: CdaHeader,
        xml: bytes,
        masks: tuple[str, ...],
        replaced: RegistryEntry | None,
        exchanges: list[DmpExchange],
    ) -> DmpReceipt:
        now = self._clock()
        set_uid, signature_uid = _oid(), _oid()
        signature = sign_submission_set(
            submission_set_uid=set_uid,
            documents=[(header.unique_id, xml)],
            key=self._key,
            cert=self._cert,
        )
        document_cid, signature_cid = mtom.new_content_id("cda"), mtom.new_content_id("signature")
        body = ebrim.provide_and_register(
            header,
            submission_set_uid=set_uid,
            source_oid=self.config.submission_source_oid,
            submission_time=_dtm(now),
            signature=ebrim.SignatureEntry(
                unique_id=signature_uid,
                sha1=hashlib.sha1(signature).hexdigest(),
                size=len(signature),
                creation_time=_dtm(now),
            ),
            masking=masks,
            replaced_entry_uuid=replaced.entry_uuid if replaced else None,
            document_cid=document_cid,
            signature_cid=signature_cid,
        )
        parts = [
            mtom.Part(document_cid, "text/xml", xml),
            mtom.Part(signature_cid, "text/xml", signature),
        ]
        answer = self._call(
            "ITI-41",
            c.ACTION_ITI41,
            self.config.repository_url,
            body,
            header,
            exchanges,
            idempotent=False,
            parts=parts,
        )
        if answer.success:
            return DmpReceipt(
                transaction="ITI-41",
                unique_id=header.unique_id,
                submission_set_uid=set_uid,
                replaced_unique_id=replaced.unique_id if replaced else None,
                replaced_entry_uuid=replaced.entry_uuid if replaced else None,
                masking=masks,
                exchanges=tuple(exchanges),
            )
        if any(e.code == "XDSDuplicateUniqueIdInRegistry" for e in answer.errors):
            existing = self._find(header, header.unique_id, exchanges)
            if (
                existing is not None
                and existing.hash.lower() == header.sha1
                and existing.size in ("", str(header.size))
                and existing.status in (c.STATUS_APPROVED, c.STATUS_DEPRECATED)
            ):
                return DmpReceipt(
                    transaction="ITI-41",
                    unique_id=header.unique_id,
                    entry_uuid=existing.entry_uuid,
                    already_present=True,
                    masking=masks,
                    exchanges=tuple(exchanges),
                )
        raise _refusal(answer.errors, "le compte rendu")

    def _find(self, header: CdaHeader, unique_id: str, exchanges: list[DmpExchange]) -> RegistryEntry | None:
        body = ebrim.get_documents_query(unique_id)
        answer = self._call(
            "ITI-18", c.ACTION_ITI18, self.config.registry_url, body, header, exchanges, idempotent=True
        )
        if not answer.success:
            raise _refusal(answer.errors, "la recherche du document")
        for entry in answer.entries:
            if entry.unique_id == unique_id:
                return entry
        return None

    def _call(
        self,
        transaction: str,
        action: str,
        url: str,
        body: etree._Element,
        header: CdaHeader,
        exchanges: list[DmpExchange],
        *,
        idempotent: bool,
        parts: list[mtom.Part] | None = None,
    ) -> Answer:
        if self._validate:
            verdict = RequestSchemas.validate(body, {p.content_id: p.data for p in parts or ()})
            if not verdict.ok:  # our own bug: never send a request the schemas refuse
                raise DmpConfigError(
                    f"Requête {transaction} non conforme aux schémas XDS.b/ebRS : non envoyée.",
                    code="dmp_request_invalid",
                    detail="\n".join(verdict.errors[:20]),
                )
        message_id = f"urn:uuid:{uuid.uuid4()}"
        vihf = build_vihf(self._claims(header), self._key, self._cert, now=self._clock())
        env = envelope(action=action, to=url, message_id=message_id, body=body, vihf=vihf)
        env_bytes = etree.tostring(env, xml_declaration=True, encoding="UTF-8")
        if parts:
            content_type, payload = mtom.package(env_bytes, parts, action=action)
        else:
            content_type, payload = f'application/soap+xml; charset=UTF-8; action="{action}"', env_bytes
        attempts = self.config.max_attempts
        for attempt in range(1, attempts + 1):
            started = time.perf_counter()
            try:
                response = self._client.post(url, content=payload, headers={"Content-Type": content_type})
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                tls = _is_tls_error(exc)
                self._record(
                    exchanges, transaction, url, message_id, env_bytes, b"", 0, "", started, "transport"
                )
                if not tls and attempt < attempts:
                    self._sleep(self.config.retry_backoff * attempt)
                    continue
                if tls:
                    raise DmpUnavailable(
                        "Connexion TLS au DMP refusée : vérifiez le certificat d'authentification "
                        "de l'organisation "
                        "et l'autorité du DMP. Inutile de réessayer avant.",
                        code="dmp_tls",
                        detail=str(exc),
                        retryable=False,
                    ) from None
                raise DmpUnavailable(
                    f"DMP injoignable ({url}) : rien n'a été envoyé. Réessayez plus tard.",
                    code="dmp_unreachable",
                    detail=str(exc),
                ) from None
            except httpx.TimeoutException as exc:
                self._record(
                    exchanges, transaction, url, message_id, env_bytes, b"", 0, "", started, "timeout"
                )
                if idempotent and attempt < attempts:
                    self._sleep(self.config.retry_backoff * attempt)
                    continue
                raise DmpUnavailable(
                    "Le DMP n'a pas répondu à temps. Si le document lui est parvenu, le prochain envoi le "
                    "reconnaîtra (jamais deux fois).",
                    code="dmp_timeout",
                    detail=str(exc),
                ) from None
            except httpx.HTTPError as exc:
                self._record(
                    exchanges, transaction, url, message_id, env_bytes, b"", 0, "", started, "transport"
                )
                raise DmpUnavailable(
                    "Échange interrompu avec le DMP. Réessayez plus tard.",
                    code="dmp_transport",
                    detail=str(exc),
                ) from None
            answer, outcome, error = self._read(response)
            self._record(
                exchanges,
                transaction,
                url,
                message_id,
                env_bytes,
                response.content,
                response.status_code,
                response.headers.get("Content-Type", ""),
                started,
                outcome,
            )
            if response.status_code == 503 and attempt < attempts:
                self._sleep(self.config.retry_backoff * attempt)
                continue
            if error is not None:
                raise error
            assert answer is not None
            return answer
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _read(response: httpx.Response) -> tuple[Answer | None, str, DmpUnavailable | None]:
        content_type = response.headers.get("Content-Type", "")
        media = content_type.split(";")[0].strip().lower()
        if media not in ("application/soap+xml", "multipart/related"):
            return (
                None,
                f"http_{response.status_code}",
                DmpUnavailable(
                    f"Le DMP a répondu HTTP {response.status_code} sans message SOAP : réessayez plus tard.",
                    code="dmp_http",
                    detail=response.text[:500],
                    retryable=response.status_code >= 500,
                ),
            )
        try:
            answer = parse_answer(mtom.root_part(content_type, response.content))
        except (AnswerError, mtom.MtomError) as exc:
            return (
                None,
                "unreadable",
                DmpUnavailable(
                    "Réponse du DMP illisible : rien n'est tenu pour envoyé.",
                    code="dmp_answer",
                    detail=str(exc),
                ),
            )
        if answer.fault is not None:
            fault = answer.fault
            outcome = f"fault:{fault.subcode or fault.code}"
            if any(fault.subcode.endswith(s) for s in _SECURITY_SUBCODES):
                return (
                    answer,
                    outcome,
                    DmpSecurityRefused(
                        "Le DMP refuse l'authentification de la structure (VIHF ou certificat) : "
                        f"{fault.reason}",
                        code="dmp_security",
                        detail=f"{fault.code} {fault.subcode}",
                        retryable=False,
                    ),
                )
            return (
                answer,
                outcome,
                DmpUnavailable(
                    f"Erreur du DMP : {fault.reason or fault.code}",
                    code="dmp_fault",
                    detail=f"{fault.code} {fault.subcode}",
                    retryable=fault.code == "Receiver",
                ),
            )
        if response.status_code != 200:
            return (
                answer,
                f"http_{response.status_code}",
                DmpUnavailable(
                    f"Le DMP a répondu HTTP {response.status_code}.", code="dmp_http", retryable=True
                ),
            )
        outcome = "Success" if answer.success else f"Failure:{answer.errors[0].code if answer.errors else ''}"
        return answer, outcome, None

    @staticmethod
    def _record(
        exchanges: list[DmpExchange],
        transaction: str,
        url: str,
        message_id: str,
        request: bytes,
        response: bytes,
        status: int,
        content_type: str,
        started: float,
        outcome: str,
    ) -> None:
        exchanges.append(
            DmpExchange(
                transaction=transaction,
                url=url,
                message_id=message_id,
                request_envelope=request,
                response=response,
                status=status,
                content_type=content_type,
                elapsed=time.perf_counter() - started,
                outcome=outcome,
            )
        )
