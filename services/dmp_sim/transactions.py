"""What the local DMP does with a request: ITI-41 at ``/repository``, ITI-18 and ITI-57 at ``/registry``.

:func:`process` returns the answer (status, content type, body) and what to record. The order of
the checks (and the error each one gives) is documented in ``docs/dmp-simulator.md``. The
transactions themselves are in :mod:`~services.dmp_sim.iti41`, :mod:`~services.dmp_sim.iti18` and
:mod:`~services.dmp_sim.iti57`, on :mod:`~services.dmp_sim.soap` (requests, faults, envelopes) and
:mod:`~services.dmp_sim.ebrim` (the metadata and its checks).
"""

from __future__ import annotations

from lxml import etree

from services.dmp_sim import soap
from services.dmp_sim import vocab as v
from services.dmp_sim.exchange import Context, Result
from services.dmp_sim.iti18 import stored_query
from services.dmp_sim.iti41 import provide_and_register
from services.dmp_sim.iti57 import update_document_set
from services.dmp_sim.security import SecurityFault, check_vihf
from services.dmp_sim.soap import Fault, Incoming, Refusal, fault_body, read_request

SERVICES = {"repository": (v.ITI41,), "registry": (v.ITI18, v.ITI57)}
TRANSACTIONS = {v.ITI41: "ITI-41", v.ITI18: "ITI-18", v.ITI57: "ITI-57"}


def _addressing(incoming: Incoming, service: str, url: str) -> tuple[str, str]:
    header = incoming.envelope.find(f"{{{v.SOAP}}}Header")
    action = (header.findtext(f"{{{v.WSA}}}Action") if header is not None else None) or ""
    message_id = (header.findtext(f"{{{v.WSA}}}MessageID") if header is not None else None) or ""
    to = (header.findtext(f"{{{v.WSA}}}To") if header is not None else None) or ""
    if not action.strip() or not message_id.strip() or not to.strip():
        raise Fault(
            "Sender",
            "wsa:MessageAddressingHeaderRequired",
            "WS-Addressing : Action, MessageID et To sont requis.",
        )
    action, message_id = action.strip(), message_id.strip()
    if action not in SERVICES[service]:
        raise Fault(
            "Sender", "wsa:ActionNotSupported", f"Action « {action} » non prise en charge par /{service}."
        )
    if incoming.content_type_action and incoming.content_type_action != action:
        raise Fault("Sender", "wsa:ActionMismatch", "L'action du Content-Type diffère de wsa:Action.")
    if not to.strip().rstrip("/").endswith(f"/{service}"):
        raise Fault(
            "Sender", "wsa:DestinationUnreachable", f"wsa:To « {to} » ne désigne pas ce service (/{service})."
        )
    reply_to = header.findtext(f"{{{v.WSA}}}ReplyTo/{{{v.WSA}}}Address") if header is not None else None
    if reply_to is not None and reply_to.strip() != "http://www.w3.org/2005/08/addressing/anonymous":
        raise Fault(
            "Sender",
            "wsa:OnlyAnonymousAddressSupported",
            "wsa:ReplyTo doit être anonyme (réponse synchrone).",
        )
    return action, message_id


def process(ctx: Context, service: str, url: str, content_type: str, body: bytes) -> Result:
    result = Result()
    relates_to: str | None = None
    action = ""
    try:
        incoming = read_request(content_type, body, require_mtom=service == "repository")
        action, relates_to = _addressing(incoming, service, url)
        result.action, result.message_id = action, relates_to
        result.transaction = TRANSACTIONS[action]
        header = incoming.envelope.find(f"{{{v.SOAP}}}Header")
        try:
            vihf = check_vihf(header, trust_ca=ctx.trust_ca, now=ctx.now())
        except SecurityFault as exc:
            raise Fault("Sender", exc.subcode, exc.reason) from None
        result.vihf = vihf
        if action == v.ITI41:
            provide_and_register(ctx, incoming, vihf, result)
            payload = soap.registry_response(v.SUCCESS, [])
        elif action == v.ITI18:
            payload = stored_query(ctx, incoming, vihf, result)
        else:
            update_document_set(ctx, incoming, vihf, result)
            payload = soap.registry_response(v.SUCCESS, [])
        result.outcome = "Success"
    except Fault as fault:
        result.http_status = 400 if fault.code == "Sender" else 500
        result.body = fault_body(fault, relates_to)
        result.outcome = f"fault:{fault.subcode or fault.code}"
        result.errors = [(fault.subcode or fault.code, fault.reason, "")]
        return result
    except Refusal as refusal:
        result.errors = refusal.errors
        result.outcome = f"Failure:{refusal.errors[0][0]}"
        if action == v.ITI18:
            payload = etree.Element(
                f"{{{v.QUERY}}}AdhocQueryResponse", nsmap={"query": v.QUERY}, status=v.FAILURE
            )
            payload.append(soap.registry_response(v.FAILURE, refusal.errors)[0])
        else:
            payload = soap.registry_response(v.FAILURE, refusal.errors)
    envelope = soap.envelope(f"{action}Response", relates_to, payload)
    if action == v.ITI41 and ctx.mtom_answers:
        result.content_type, result.body = soap.mtom(envelope, f"{action}Response")
    else:
        result.body = envelope
    return result


__all__ = ["SERVICES", "TRANSACTIONS", "Context", "Result", "process"]
