"""Validation of a CDA R2 CR-BIO: the ANS CDA schema (lxml) and the CR-BIO 2024.01 schematron (SaxonC-HE).

The artefacts are the ANS ones (``ansforge/TestContenuCDA-3-0``, see ``cda_validation/PROVENANCE.json``),
shipped with the package in ``services/results/cda_validation/``:

- ``infrastructure/cda/CDA_extended.xsd``: the CDA R2 schema as extended by the ANS, loaded once
  with lxml (``xmlschema`` rejects it in strict mode);
- ``schematrons/CI-SIS_BIO-CR-BIO_2024.01.sch``: an XSLT 2 schematron (``lxml.isoschematron`` cannot
  run it). It is compiled once with SaxonC-HE (``saxonche``) through the ISO pipeline of
  ``schematrons/moteur/`` (``iso_dsdl_include`` → ``iso_abstract_expand`` → ``iso_svrl_for_xslt2``).
  Its value sets are read at run time by ``document('../jeuxDeValeurs/…')`` *relative to the
  compiled stylesheet*, so the compiled XSLT must sit next to the ``.sch``: the tree is copied to a
  writable cache directory (one folder per content digest of the shipped tree) and compiled there.

A report counts every ``svrl:failed-assert``. The validator never passes silently: when SaxonC
cannot be imported or started, or when the compiled schematron produces no SVRL report, it raises
:class:`SchematronUnavailable` (exit 3) rather than returning an empty list of failed asserts.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from lxml import etree

from services.errors import ExternalFailure, InvalidData

__all__ = [
    "ARTEFACTS_DIR",
    "SCHEMATRON",
    "XSD",
    "CdaValidator",
    "FailedAssert",
    "SchematronUnavailable",
    "ValidationReport",
    "XsdError",
    "default_validator",
]

ARTEFACTS_DIR: Final = Path(__file__).with_name("cda_validation")
XSD: Final = Path("infrastructure/cda/CDA_extended.xsd")
SCHEMATRON: Final = Path("schematrons/CI-SIS_BIO-CR-BIO_2024.01.sch")
_MOTEUR: Final = Path("schematrons/moteur")
_PIPELINE: Final = ("iso_dsdl_include.xsl", "iso_abstract_expand.xsl", "iso_svrl_for_xslt2.xsl")
_COMPILED_SUFFIX: Final = ".compiled.xsl"
ENV_CACHE_DIR: Final = "INSDESK_CACHE_DIR"

SVRL_NS: Final = "http://purl.oclc.org/dsdl/svrl"
_SVRL = f"{{{SVRL_NS}}}"


class SchematronUnavailable(ExternalFailure):
    """SaxonC-HE cannot run the schematron: validation is impossible (never a silent pass)."""

    default_code = "schematron_unavailable"
    title = "Validation CDA impossible"


@dataclass(frozen=True)
class XsdError:
    line: int
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "message": self.message}


@dataclass(frozen=True)
class FailedAssert:
    """One ``svrl:failed-assert``: its id (when the schematron gives one), location, test and text."""

    id: str | None
    location: str
    test: str
    text: str

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "location": self.location, "test": self.test, "text": self.text}


@dataclass(frozen=True)
class ValidationReport:
    xsd_errors: list[XsdError] = field(default_factory=list)
    failed_asserts: list[FailedAssert] = field(default_factory=list)
    fired_rules: int = 0

    @property
    def ok(self) -> bool:
        return not self.xsd_errors and not self.failed_asserts

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "xsd_errors": [e.as_dict() for e in self.xsd_errors],
            "failed_asserts": [a.as_dict() for a in self.failed_asserts],
        }

    def summary(self) -> str:
        """French, one line per problem (for an error message or a test failure)."""
        lines = [f"XSD ligne {e.line} : {e.message}" for e in self.xsd_errors]
        lines += [f"schematron {a.location} : {a.text}" for a in self.failed_asserts]
        return "\n".join(lines) or "document conforme (XSD et schématron CR-BIO)"


def _tree_digest(root: Path) -> str:
    """A digest of every file of the shipped tree (paths and contents)."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel.endswith(_COMPILED_SUFFIX) or "__pycache__" in rel:
            continue
        h.update(rel.encode() + b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:16]


def _default_cache_root() -> Path:
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env)
    try:
        import platformdirs

        return Path(platformdirs.user_cache_dir("insdesk"))
    except Exception:  # pragma: no cover - platformdirs is a dependency
        return Path(tempfile.gettempdir()) / "insdesk-cache"


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=folder, delete=True)  # noqa: SIM115
        probe.close()
    except OSError:
        return False
    return True


def _saxon() -> Any:
    try:
        import saxonche
    except ImportError as err:
        raise SchematronUnavailable(
            "Validation du CDA impossible : le moteur XSLT 2 SaxonC-HE (paquet Python « saxonche ») "
            "n'est pas installé.",
            detail=str(err),
        ) from err
    return saxonche


_PROCESSOR_LOCK = threading.Lock()
_PROCESSOR: Any = None


def _processor() -> Any:
    """One SaxonC processor per process (SaxonC does not like several)."""
    global _PROCESSOR
    with _PROCESSOR_LOCK:
        if _PROCESSOR is None:
            saxonche = _saxon()
            try:
                _PROCESSOR = saxonche.PySaxonProcessor(license=False)
            except Exception as err:
                raise SchematronUnavailable(
                    "Validation du CDA impossible : le moteur SaxonC-HE ne démarre pas.", detail=repr(err)
                ) from err
        return _PROCESSOR


class CdaValidator:
    """XSD + CR-BIO schematron validation; loads and compiles once, then validates many documents.

    ``artefacts`` is the shipped tree (read only); ``cache_dir`` the writable folder where a copy of
    it is made and the schematron compiled (default: ``$INSDESK_CACHE_DIR``, else the user cache
    folder, else the temporary folder). Thread-safe: runs are serialised on one lock.
    """

    def __init__(self, *, artefacts: Path = ARTEFACTS_DIR, cache_dir: Path | None = None) -> None:
        self.artefacts = artefacts
        self._cache_root = cache_dir
        self._lock = threading.Lock()
        self._schema: etree.XMLSchema | None = None
        self._executable: Any = None
        self.compiled_path: Path | None = None

    # --- loading -------------------------------------------------------------------------

    def _load_schema(self) -> etree.XMLSchema:
        if self._schema is None:
            xsd = self.artefacts / XSD
            try:
                self._schema = etree.XMLSchema(etree.parse(str(xsd)))
            except (OSError, etree.XMLSchemaParseError, etree.XMLSyntaxError) as err:
                raise SchematronUnavailable(
                    f"Validation du CDA impossible : le schéma {XSD} ne se charge pas.", detail=str(err)
                ) from err
        return self._schema

    def _mirror(self) -> Path:
        """A writable copy of the artefacts tree (made once per content digest)."""
        digest = _tree_digest(self.artefacts)
        roots = [self._cache_root] if self._cache_root else [_default_cache_root()]
        roots.append(Path(tempfile.gettempdir()) / "insdesk-cache")
        for root in roots:
            assert root is not None
            base = root / "cda_validation"
            if not _writable(base):
                continue
            target = base / digest
            if (target / SCHEMATRON).is_file():
                return target
            staging = Path(tempfile.mkdtemp(prefix=f".{digest}-", dir=base))
            try:
                shutil.copytree(self.artefacts, staging / "tree")
                try:
                    os.replace(staging / "tree", target)
                except OSError:
                    if not (target / SCHEMATRON).is_file():  # not a concurrent copy that won
                        raise
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            return target
        raise SchematronUnavailable(
            "Validation du CDA impossible : aucun dossier de cache accessible en écriture pour "
            f"compiler le schématron (réglez {ENV_CACHE_DIR})."
        )

    def _compile(self) -> Any:
        if self._executable is not None:
            return self._executable
        saxonche = _saxon()
        proc = _processor()
        tree = self._mirror()
        sch = tree / SCHEMATRON
        compiled = sch.with_name(sch.stem + _COMPILED_SUFFIX)
        try:
            xslt = proc.new_xslt30_processor()
            if not compiled.is_file():
                current = sch
                for i, step in enumerate(_PIPELINE):
                    last = i == len(_PIPELINE) - 1
                    out = compiled.with_name(f".{compiled.name}.{os.getpid()}.{i}.tmp")
                    stylesheet = xslt.compile_stylesheet(stylesheet_file=str(tree / _MOTEUR / step))
                    stylesheet.transform_to_file(source_file=str(current), output_file=str(out))
                    if not out.is_file() or out.stat().st_size == 0:
                        raise SchematronUnavailable(
                            f"Validation du CDA impossible : l'étape {step} de compilation du schématron "
                            "n'a rien produit."
                        )
                    if current != sch:
                        current.unlink(missing_ok=True)
                    if last:
                        os.replace(out, compiled)
                    current = out
            executable = xslt.compile_stylesheet(stylesheet_file=str(compiled))
        except saxonche.PySaxonApiError as err:
            raise SchematronUnavailable(
                "Validation du CDA impossible : la compilation du schématron CR-BIO a échoué.",
                detail=str(err),
            ) from err
        self.compiled_path = compiled
        self._executable = executable
        return executable

    def load(self) -> CdaValidator:
        """Loads the XSD and compiles the schematron now (else on the first validation)."""
        with self._lock:
            self._load_schema()
            self._compile()
        return self

    # --- validation ------------------------------------------------------------------------

    @staticmethod
    def _parse(xml_bytes: bytes) -> etree._ElementTree:
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
        try:
            doc = etree.ElementTree(etree.fromstring(xml_bytes, parser))
        except etree.XMLSyntaxError as err:
            raise InvalidData(f"Le document CDA n'est pas du XML bien formé : {err}") from err
        if doc.docinfo.doctype:
            raise InvalidData("Le document CDA contient une déclaration DOCTYPE : refusé.")
        return doc

    def validate(self, xml_bytes: bytes) -> ValidationReport:
        """XSD errors and failed schematron asserts of a CDA document (bytes, any XML encoding)."""
        doc = self._parse(xml_bytes)
        with self._lock:
            schema = self._load_schema()
            executable = self._compile()
            schema.validate(doc)
            xsd_errors = [XsdError(e.line, e.message) for e in schema.error_log]
            svrl_text = self._run(executable, doc)
        is_cda = doc.getroot().tag == "{urn:hl7-org:v3}ClinicalDocument"
        return self._report(xsd_errors, svrl_text, expect_rules=is_cda)

    def _run(self, executable: Any, doc: etree._ElementTree) -> str:
        saxonche = _saxon()
        proc = _processor()
        text = etree.tostring(doc, encoding="unicode")
        try:
            node = proc.parse_xml(xml_text=text)
            result = executable.transform_to_string(xdm_node=node)
        except saxonche.PySaxonApiError as err:
            raise SchematronUnavailable(
                "Validation du CDA impossible : l'exécution du schématron CR-BIO a échoué.", detail=str(err)
            ) from err
        if not result:
            raise SchematronUnavailable(
                "Validation du CDA impossible : le schématron CR-BIO n'a produit aucun rapport."
            )
        return str(result)

    @staticmethod
    def _report(xsd_errors: list[XsdError], svrl_text: str, *, expect_rules: bool) -> ValidationReport:
        """Reads the SVRL; a CDA on which no rule fired means a broken engine, never a pass."""
        parser = etree.XMLParser(resolve_entities=False, no_network=True)
        try:
            svrl = etree.fromstring(svrl_text.encode("utf-8"), parser)
        except etree.XMLSyntaxError as err:
            raise SchematronUnavailable(
                "Validation du CDA impossible : rapport SVRL illisible.", detail=str(err)
            ) from err
        if svrl.tag != f"{_SVRL}schematron-output":
            raise SchematronUnavailable(
                "Validation du CDA impossible : le schématron n'a pas produit de rapport SVRL.",
                detail=str(svrl.tag),
            )
        fired = len(svrl.findall(f"{_SVRL}fired-rule"))
        if expect_rules and (fired == 0 or svrl.find(f"{_SVRL}active-pattern") is None):
            raise SchematronUnavailable(
                "Validation du CDA impossible : aucune règle du schématron ne s'est appliquée "
                "(moteur ou schématron défectueux)."
            )
        failed = []
        for fa in svrl.iter(f"{_SVRL}failed-assert"):
            text_el = fa.find(f"{_SVRL}text")
            text = " ".join("".join(text_el.itertext()).split()) if text_el is not None else ""
            failed.append(
                FailedAssert(
                    id=fa.get("id"), location=fa.get("location", ""), test=fa.get("test", ""), text=text
                )
            )
        return ValidationReport(xsd_errors=xsd_errors, failed_asserts=failed, fired_rules=fired)


_DEFAULT: CdaValidator | None = None
_DEFAULT_LOCK = threading.Lock()


def default_validator() -> CdaValidator:
    """The process-wide validator on the shipped artefacts (compiled on first use)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = CdaValidator()
        return _DEFAULT
