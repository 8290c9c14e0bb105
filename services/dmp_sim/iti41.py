"""ITI-41 Provide and Register Document Set-b at ``/repository``: the documents (MTOM), the
patient, the submission set signature, the replacements, then the registration."""

from __future__ import annotations

import hashlib
from typing import Any

from services.dmp_sim import ebrim
from services.dmp_sim import vocab as v
from services.dmp_sim.exchange import Context, Result, patient_gate
from services.dmp_sim.registry import Entry
from services.dmp_sim.security import SignatureProblem, Vihf, check_submission_signature
from services.dmp_sim.soap import Fault, Incoming, refuse


def provide_and_register(ctx: Context, incoming: Incoming, vihf: Vihf, result: Result) -> None:
    body = incoming.envelope.find(f"{{{v.SOAP}}}Body")
    request = body[0] if body is not None and len(body) else None
    if request is None or request.tag != f"{{{v.XDSB}}}ProvideAndRegisterDocumentSetRequest":
        raise Fault("Sender", "", "Corps ITI-41 : xdsb:ProvideAndRegisterDocumentSetRequest attendu.")
    objects = request.find(f"{{{v.LCM}}}SubmitObjectsRequest/{{{v.RIM}}}RegistryObjectList")
    if objects is None:
        raise refuse("XDSRegistryMetadataError", "RegistryObjectList absent")
    # 1. Documents: every xdsb:Document is an xop:Include to a MIME part (MTOM), matched to an entry.
    documents: dict[str, bytes] = {}
    referenced: set[str] = set()
    for document in request.findall(f"{{{v.XDSB}}}Document"):
        include = document.find(f"{{{v.XOP}}}Include")
        if include is None:
            raise Fault("Sender", "", "ITI-41 : chaque xdsb:Document doit être un xop:Include (MTOM).")
        href = include.get("href", "")
        cid = href.removeprefix("cid:")
        if not href.startswith("cid:") or cid not in incoming.parts:
            raise Fault("Sender", "", f"MTOM : la partie {href} est absente du paquet.")
        referenced.add(cid)
        documents[document.get("id", "")] = incoming.parts[cid]
    if set(incoming.parts) - referenced:
        raise Fault("Sender", "", "MTOM : partie(s) MIME non référencée(s) par un xop:Include.")
    package = ebrim.submission_set(objects)
    ss_uid, ss_patient, ss_institution = ebrim.check_submission_set(package)
    result.patient_id = ss_patient
    entries = [
        e for e in objects.findall(f"{{{v.RIM}}}ExtrinsicObject") if e.get("objectType") == v.DOCUMENT_ENTRY
    ]
    if not entries:
        raise refuse("XDSRegistryMetadataError", "aucune fiche de document (ExtrinsicObject)")
    entry_ids = {e.get("id", "") for e in entries}
    for entry_id in entry_ids - set(documents):
        raise refuse("XDSMissingDocument", entry_id, entry_id)
    for document_id in set(documents) - entry_ids:
        raise refuse("XDSMissingDocumentMetadata", document_id, document_id)
    # 2. Patient: the same INS in the submission set, every entry, the VIHF and the CDA; DMP state.
    ins, ins_oid = ebrim.cx_ins(ss_patient)
    if ins_oid not in v.INS_OIDS or len(ins) != 15:
        raise refuse(
            "XDSRegistryMetadataError", "patientId du lot : INS attendu (CX ^^^&OID&ISO)", "SubmissionSet"
        )
    if (ins, ins_oid) != (vihf.ins, vihf.ins_oid):
        raise refuse("XDSPatientIdDoesNotMatch", "lot et VIHF (resource-id)", "SubmissionSet")
    patient_gate(ctx, ins)
    associations = objects.findall(f"{{{v.RIM}}}Association")
    members = {
        a.get("targetObject")
        for a in associations
        if a.get("associationType") == v.HAS_MEMBER and a.get("sourceObject") == package.get("id")
    }
    signatures = {
        a.get("sourceObject")
        for a in associations
        if a.get("associationType") == v.SIGNS and a.get("targetObject") == package.get("id")
    }
    parsed: list[dict[str, Any]] = []
    for entry in entries:
        entry_id = entry.get("id", "")
        if entry_id not in members:
            raise refuse(
                "XDSRegistryMetadataError", f"{entry_id} n'est pas membre du lot (HasMember)", entry_id
            )
        is_signature = entry_id in signatures
        ebrim.check_codes(entry, entry_id, signature=is_signature)
        slots = ebrim.slots(entry)
        for name in ("creationTime", "hash", "size", "languageCode", "sourcePatientId"):
            if not (slots.get(name) or [""])[0]:
                raise refuse("XDSRegistryMetadataError", f"{entry_id} : {name} absent", entry_id)
        patient_id = ebrim.external(entry, v.DE_PATIENT_ID)
        unique_id = ebrim.external(entry, v.DE_UNIQUE_ID)
        if not unique_id:
            raise refuse("XDSRegistryMetadataError", f"{entry_id} : uniqueId absent", entry_id)
        if patient_id != ss_patient:
            raise refuse("XDSPatientIdDoesNotMatch", f"{entry_id} et lot de soumission", entry_id)
        content = documents[entry_id]
        if slots["hash"][0].lower() != hashlib.sha1(content).hexdigest():
            raise refuse("XDSNonIdenticalHash", entry_id, entry_id)
        if slots["size"][0] != str(len(content)):
            raise refuse("XDSNonIdenticalSize", entry_id, entry_id)
        if ctx.registry.by_unique_id(unique_id) is not None:
            raise refuse("XDSDuplicateUniqueIdInRegistry", unique_id, entry_id)
        parent_id = None
        if not is_signature:
            cda_ins, cda_oid, cda_id, parent_id = ebrim.cda_ins_and_id(content)
            if (cda_ins, cda_oid) != (ins, ins_oid):
                raise refuse("XDSPatientIdDoesNotMatch", f"{entry_id} : INS du document CDA", entry_id)
            if cda_id != unique_id:
                raise refuse(
                    "XDSRegistryMetadataError", f"{entry_id} : uniqueId différent de l'id du CDA", entry_id
                )
        parsed.append(
            {
                "entry": entry,
                "entry_id": entry_id,
                "unique_id": unique_id,
                "signature": is_signature,
                "slots": slots,
                "parent_id": parent_id,
            }
        )
    # 3. The submission set signature (IHE DSG): required, must cover every other document.
    signed = [p for p in parsed if p["signature"]]
    if len(signed) != 1:
        raise refuse(
            "XDSRegistryMetadataError",
            "lot de soumission non signé (document de signature et association signs)",
        )
    try:
        check_submission_signature(
            documents[signed[0]["entry_id"]],
            submission_set_uid=ss_uid,
            documents={p["unique_id"]: documents[p["entry_id"]] for p in parsed if not p["signature"]},
            trust_ca=ctx.trust_ca,
        )
    except SignatureProblem as exc:
        raise refuse("XDSRegistryMetadataError", f"signature du lot : {exc}", signed[0]["entry_id"]) from None
    # 4. Replacements: the RPLC target must be an approved entry of the same patient.
    replaced: dict[str, Entry] = {}
    for association in associations:
        if association.get("associationType") != v.RPLC:
            continue
        source, target = association.get("sourceObject", ""), association.get("targetObject", "")
        source_entry = next((p for p in parsed if p["entry_id"] == source and not p["signature"]), None)
        if source_entry is None:
            raise refuse("XDSRegistryMetadataError", "RPLC : la source doit être une fiche du lot", source)
        old = ctx.registry.by_entry_uuid(target)
        if old is None:
            raise refuse("UnresolvedReferenceException", f"RPLC vers {target}", target)
        if old.status != v.APPROVED:
            raise refuse(
                "XDSRegistryMetadataError", f"RPLC : le document {old.unique_id} n'est plus à jour", target
            )
        if old.ins != ins:
            raise refuse(
                "XDSPatientIdDoesNotMatch", "RPLC : le document remplacé est d'un autre patient", target
            )
        if source_entry["parent_id"] != old.unique_id:
            raise refuse(
                "XDSRegistryMetadataError",
                "RPLC : relatedDocument du CDA différent du document remplacé",
                source,
            )
        replaced[source] = old
    if ctx.forced_error:
        raise refuse(ctx.forced_error, "panne simulée")
    # 5. Register.
    with ctx.registry.lock:
        for item in parsed:
            if ctx.registry.by_unique_id(item["unique_id"]) is not None:
                raise refuse("XDSDuplicateUniqueIdInRegistry", item["unique_id"], item["entry_id"])
        for item in parsed:
            entry = item["entry"]
            old = replaced.get(item["entry_id"])
            ctx.registry.entries[item["unique_id"]] = Entry(
                entry_uuid=ctx.registry.new_entry_uuid(),
                unique_id=item["unique_id"],
                patient_id=ss_patient,
                ins=ins,
                status=v.APPROVED,
                hash=item["slots"]["hash"][0].lower(),
                size=int(item["slots"]["size"][0]),
                mime_type=entry.get("mimeType", ""),
                confidentiality=tuple(
                    ebrim.coded(c) for c in ebrim.classifications(entry, v.DE_CONFIDENTIALITY)
                ),
                class_code=ebrim.coded(ebrim.classifications(entry, v.DE_CLASS)[0]),
                type_code=ebrim.coded(ebrim.classifications(entry, v.DE_TYPE)[0]),
                format_code=ebrim.coded(ebrim.classifications(entry, v.DE_FORMAT)[0]),
                author_institution=ss_institution,
                submission_set_uid=ss_uid,
                document=documents[item["entry_id"]],
                replaces=old.entry_uuid if old else None,
            )
            if old is not None:
                ctx.registry.set_status(old, v.DEPRECATED)
            result.unique_ids.append(item["unique_id"])
        ctx.registry.submission_sets.append(ss_uid)
