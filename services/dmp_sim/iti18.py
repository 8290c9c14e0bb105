"""ITI-18 Registry Stored Query at ``/registry`` (GetDocuments): only the documents of the patient
the VIHF names."""

from __future__ import annotations

import uuid

from lxml import etree

from services.dmp_sim import ebrim
from services.dmp_sim import vocab as v
from services.dmp_sim.exchange import Context, Result
from services.dmp_sim.registry import Entry
from services.dmp_sim.security import Vihf
from services.dmp_sim.soap import Fault, Incoming, refuse


def _leaf(entry: Entry) -> etree._Element:
    obj = etree.Element(
        f"{{{v.RIM}}}ExtrinsicObject",
        id=entry.entry_uuid,
        lid=entry.entry_uuid,
        mimeType=entry.mime_type or "text/xml",
        objectType=v.DOCUMENT_ENTRY,
        status=entry.status,
    )
    for name, value in (
        ("hash", entry.hash),
        ("size", str(entry.size)),
        ("repositoryUniqueId", "1.2.250.1.213.4.1.9"),
    ):
        slot = etree.SubElement(obj, f"{{{v.RIM}}}Slot", name=name)
        etree.SubElement(etree.SubElement(slot, f"{{{v.RIM}}}ValueList"), f"{{{v.RIM}}}Value").text = value
    for code, scheme in entry.confidentiality:
        cl = etree.SubElement(
            obj,
            f"{{{v.RIM}}}Classification",
            id=f"urn:uuid:{uuid.uuid4()}",
            classificationScheme=v.DE_CONFIDENTIALITY,
            classifiedObject=entry.entry_uuid,
            nodeRepresentation=code,
        )
        slot = etree.SubElement(cl, f"{{{v.RIM}}}Slot", name="codingScheme")
        etree.SubElement(etree.SubElement(slot, f"{{{v.RIM}}}ValueList"), f"{{{v.RIM}}}Value").text = scheme
    for scheme, value in ((v.DE_PATIENT_ID, entry.patient_id), (v.DE_UNIQUE_ID, entry.unique_id)):
        etree.SubElement(
            obj,
            f"{{{v.RIM}}}ExternalIdentifier",
            id=f"urn:uuid:{uuid.uuid4()}",
            registryObject=entry.entry_uuid,
            identificationScheme=scheme,
            value=value,
        )
    return obj


def stored_query(ctx: Context, incoming: Incoming, vihf: Vihf, result: Result) -> etree._Element:
    body = incoming.envelope.find(f"{{{v.SOAP}}}Body")
    request = body[0] if body is not None and len(body) else None
    if request is None or request.tag != f"{{{v.QUERY}}}AdhocQueryRequest":
        raise Fault("Sender", "", "Corps ITI-18 : query:AdhocQueryRequest attendu.")
    option = request.find(f"{{{v.QUERY}}}ResponseOption")
    return_type = option.get("returnType", "LeafClass") if option is not None else "LeafClass"
    query = request.find(f"{{{v.RIM}}}AdhocQuery")
    if query is None or query.get("id") != v.GET_DOCUMENTS:
        raise refuse("XDSUnknownStoredQuery", query.get("id", "") if query is not None else "")
    params = ebrim.slots(query)
    wanted_uids = _query_list(params.get("$XDSDocumentEntryUniqueId"))
    wanted_uuids = _query_list(params.get("$XDSDocumentEntryEntryUUID"))
    if bool(wanted_uids) == bool(wanted_uuids):
        raise refuse("XDSStoredQueryParamNumber", "$XDSDocumentEntryUniqueId ou $XDSDocumentEntryEntryUUID")
    response = etree.Element(
        f"{{{v.QUERY}}}AdhocQueryResponse", nsmap={"query": v.QUERY, "rim": v.RIM}, status=v.SUCCESS
    )
    objects = etree.SubElement(response, f"{{{v.RIM}}}RegistryObjectList")
    with ctx.registry.lock:
        found = [ctx.registry.by_unique_id(uid) for uid in wanted_uids] + [
            ctx.registry.by_entry_uuid(u) for u in wanted_uuids
        ]
    for entry in found:
        # Only the documents of the patient the VIHF names (access control).
        if entry is None or entry.ins != vihf.ins:
            continue
        result.unique_ids.append(entry.unique_id)
        if return_type == "ObjectRef":
            etree.SubElement(objects, f"{{{v.RIM}}}ObjectRef", id=entry.entry_uuid)
        else:
            objects.append(_leaf(entry))
    return response


def _query_list(values: list[str] | None) -> list[str]:
    found: list[str] = []
    for value in values or []:
        for item in value.strip().strip("()").split(","):
            item = item.strip().strip("'")
            if item:
                found.append(item)
    return found
