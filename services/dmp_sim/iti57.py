"""ITI-57 Update Document Set at ``/registry``: the availability status of a document (withdrawal
by its author)."""

from __future__ import annotations

from services.dmp_sim import ebrim
from services.dmp_sim import vocab as v
from services.dmp_sim.exchange import Context, Result, patient_gate
from services.dmp_sim.security import Vihf
from services.dmp_sim.soap import Fault, Incoming, refuse


def update_document_set(ctx: Context, incoming: Incoming, vihf: Vihf, result: Result) -> None:
    body = incoming.envelope.find(f"{{{v.SOAP}}}Body")
    request = body[0] if body is not None and len(body) else None
    if request is None or request.tag != f"{{{v.LCM}}}SubmitObjectsRequest":
        raise Fault("Sender", "", "Corps ITI-57 : lcm:SubmitObjectsRequest attendu.")
    objects = request.find(f"{{{v.RIM}}}RegistryObjectList")
    if objects is None:
        raise refuse("XDSRegistryMetadataError", "RegistryObjectList absent")
    package = ebrim.submission_set(objects)
    _, ss_patient, ss_institution = ebrim.check_submission_set(package)
    result.patient_id = ss_patient
    ins, ins_oid = ebrim.cx_ins(ss_patient)
    if (ins, ins_oid) != (vihf.ins, vihf.ins_oid):
        raise refuse("XDSPatientIdDoesNotMatch", "lot et VIHF (resource-id)", "SubmissionSet")
    updates = [
        a
        for a in objects.findall(f"{{{v.RIM}}}Association")
        if a.get("associationType") == v.UPDATE_AVAILABILITY
    ]
    if len(updates) != 1 or updates[0].get("sourceObject") != package.get("id"):
        raise refuse(
            "XDSMetadataUpdateError", "une association UpdateAvailabilityStatus depuis le lot est attendue"
        )
    update = updates[0]
    slots = ebrim.slots(update)
    original = (slots.get("OriginalStatus") or [""])[0]
    new = (slots.get("NewStatus") or [""])[0]
    if new not in v.STATUSES or original not in v.STATUSES:
        raise refuse("XDSMetadataUpdateError", "OriginalStatus/NewStatus invalides")
    patient_gate(ctx, ins)
    with ctx.registry.lock:
        entry = ctx.registry.by_entry_uuid(update.get("targetObject", ""))
        if entry is None:
            raise refuse("UnresolvedReferenceException", update.get("targetObject", ""))
        if entry.ins != ins:
            raise refuse("XDSPatientIdDoesNotMatch", "le document visé est d'un autre patient")
        if entry.status != original:
            raise refuse("XDSMetadataUpdateError", "OriginalStatus différent du statut du document")
        if entry.author_institution.split("^")[-1] != ss_institution.split("^")[-1]:
            raise refuse("XDSMetadataUpdateError", "seul l'auteur du document peut le supprimer")
        if ctx.forced_error:
            raise refuse(ctx.forced_error, "panne simulée")
        ctx.registry.set_status(entry, new)
        result.unique_ids.append(entry.unique_id)
