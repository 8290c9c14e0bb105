"""Validation of the requests we send against the IHE XDS.b and OASIS ebRS 3.0 schemas.

The schemas are copies of ``IHE/IT-Infrastructure`` (``xsd/PROVENANCE.json``). ``rim.xsd`` imports
the W3C ``xml.xsd`` by its URL: a resolver serves the local copy, nothing is fetched. The MTOM
package is checked as its XOP infoset: each ``xop:Include`` is replaced by the base64 text of the
part it designates (``xdsb:Document`` is ``base64Binary``), then the body element is validated.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from services.dmp import codes as c

XSD_DIR = Path(__file__).resolve().parent / "xsd"
_XML_XSD_URL = "http://www.w3.org/2001/xml.xsd"


class _LocalResolver(etree.Resolver):  # type: ignore[misc]
    def resolve(self, system_url: str, public_id: str, context: object) -> object:
        if system_url == _XML_XSD_URL or system_url.endswith("/xml.xsd"):
            return self.resolve_filename(str(XSD_DIR / "w3c" / "xml.xsd"), context)
        return None


@dataclass(frozen=True)
class SchemaVerdict:
    ok: bool
    errors: tuple[str, ...] = ()


class RequestSchemas:
    """The XDS.b repository schema (it imports rim, rs, lcm and query): validates any request body."""

    _lock = threading.Lock()
    _schema: etree.XMLSchema | None = None

    @classmethod
    def schema(cls) -> etree.XMLSchema:
        with cls._lock:
            if cls._schema is None:
                parser = etree.XMLParser(no_network=True, resolve_entities=False)
                parser.resolvers.add(_LocalResolver())
                doc = etree.parse(str(XSD_DIR / "IHE" / "XDS.b_DocumentRepository.xsd"), parser)
                cls._schema = etree.XMLSchema(doc)
            return cls._schema

    @classmethod
    def validate(cls, body: etree._Element, attachments: Mapping[str, bytes] | None = None) -> SchemaVerdict:
        """Validates a request body element; ``attachments`` maps Content-IDs to the parts' bytes."""
        element = etree.fromstring(etree.tostring(body))
        for include in list(element.iter(f"{{{c.NS_XOP}}}Include")):
            href = include.get("href", "")
            cid = href[4:] if href.startswith("cid:") else href
            data = (attachments or {}).get(cid)
            parent = include.getparent()
            if data is None or parent is None:
                return SchemaVerdict(False, (f"xop:Include sans partie : {href}",))
            parent.remove(include)
            parent.text = base64.b64encode(data).decode()
        schema = cls.schema()
        if schema.validate(element):
            return SchemaVerdict(True)
        return SchemaVerdict(False, tuple(f"ligne {e.line} : {e.message}" for e in schema.error_log))
