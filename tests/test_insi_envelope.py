"""INSi request envelopes (services/insi/envelope.py) and configuration (services/insi/config.py).

The body and both contexts are validated against the shared XSDs (copied in services/insi/xsd/);
the layout is compared with the reference request (fixtures/insi_samples/).
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import uuid
from pathlib import Path

import pytest
from lxml import etree

from services.errors import BadRequest
from services.identity.birthdate import BirthDate
from services.identity.traits import StrictTraits
from services.insi import envelope as envelope_module
from services.insi.config import PROD_ENDPOINT, QUALIF_ENDPOINT, InsiConfig, RetryPolicy, is_loopback_host
from services.insi.envelope import (
    ACTION_TRAITS,
    ACTION_VITALE,
    NS_CTXBAM,
    NS_CTXLPS,
    NS_RECSANS,
    NS_RECVIT,
    NS_SAML2,
    NS_SOAP,
    NS_WSA,
    NS_WSSE,
    OPERATION_TRAITS,
    OPERATION_VITALE,
    TraitsQuery,
    VitaleQuery,
    build_traits_request,
    build_vitale_request,
)
from tests.sesam_double import assertion_xml

ROOT = Path(__file__).resolve().parent.parent
XSD_DIR = ROOT / "services" / "insi" / "xsd"
SAMPLES = ROOT / "fixtures" / "insi_samples"
SHARED_XSD = ROOT.parent / "shared" / "reference" / "insi"
INSTANCE = "b3549edd-4ae9-472a-b26f-fd2fb4ef397f"
NOW = datetime.datetime(2024, 3, 5, 14, 7, 9, 123456, tzinfo=datetime.UTC)
MESSAGE_ID = uuid.UUID("1f7425e2-b913-415c-adaa-785ee1076a70")


def make_config(endpoint: str = "http://127.0.0.1:8765/lps", **kwargs: object) -> InsiConfig:
    return InsiConfig(
        endpoint=endpoint,
        idam="IDAM-TEST-42",
        software_name="insdesk",
        software_version="0.1.0",
        instance_id=INSTANCE,
        emitter="accueil@labo.example",
        **kwargs,  # type: ignore[arg-type]
    )


_SCHEMAS: dict[str, etree.XMLSchema] = {}


def schema(name: str) -> etree.XMLSchema:
    if name not in _SCHEMAS:
        _SCHEMAS[name] = etree.XMLSchema(etree.parse(str(XSD_DIR / name)))
    return _SCHEMAS[name]


def assert_valid(name: str, element: etree._Element) -> None:
    xsd = schema(name)
    assert xsd.validate(element), str(xsd.error_log)


def one(root: etree._Element, ns: str, name: str) -> etree._Element:
    found = root.findall(f".//{{{ns}}}{name}")
    assert len(found) == 1, f"{name}: {len(found)}"
    return found[0]


def names(element: etree._Element) -> list[tuple[str | None, str]]:
    return [(etree.QName(c).namespace, etree.QName(c).localname) for c in element if isinstance(c.tag, str)]


# --- traits search ---------------------------------------------------------------------------


def traits_envelope(**overrides: object) -> etree._Element:
    query = TraitsQuery(
        **{  # type: ignore[arg-type]
            "birth_name": "ADRTROIS",
            "first_names": "TOUSSAINT",
            "sex": "M",
            "birth_date": "1960-01-01",
            "birthplace": None,
            **overrides,
        }
    )
    envelope = build_traits_request(make_config(), query, message_id=MESSAGE_ID, now=NOW)
    assert envelope.operation == OPERATION_TRAITS
    assert envelope.action == ACTION_TRAITS
    assert envelope.message_id == f"uuid:{MESSAGE_ID}"
    assert envelope.xml.startswith(b"<?xml")
    return etree.fromstring(envelope.xml)


def test_traits_request_validates_against_the_xsds() -> None:
    for birthplace in (None, "2B020"):
        root = traits_envelope(birthplace=birthplace)
        assert_valid("INSi_RECSANS_INS.xsd", one(root, NS_RECSANS, "RECSANSVITALE"))
        assert_valid("ROOT_ctxlps_CTXLPS_V01_00.xsd", one(root, NS_CTXLPS, "ContexteLPS"))
        assert_valid("ROOT_ctxbam_CTXBAM_V01_02.xsd", one(root, NS_CTXBAM, "ContexteBAM"))


def test_traits_request_has_the_layout_of_the_reference_request() -> None:
    sample = etree.parse(str(SAMPLES / "request_RECSANSVITALE_mTLS_ADRTROIS_TOUSSAINT.xml")).getroot()
    root = traits_envelope()
    assert etree.QName(root).text == f"{{{NS_SOAP}}}Envelope"
    assert names(root) == names(sample) == [(NS_SOAP, "Header"), (NS_SOAP, "Body")]

    header, sample_header = root[0], sample[0]
    # Same headers in the same order; WS-Addressing To added at the end.
    assert names(header) == [*names(sample_header), (NS_WSA, "To")]
    for context in ("ContexteBAM", "ContexteLPS"):
        ns = NS_CTXBAM if context == "ContexteBAM" else NS_CTXLPS
        ours, theirs = one(root, ns, context), one(sample, ns, context)
        assert dict(ours.attrib) == dict(theirs.attrib)
        assert names(ours) == names(theirs)
    assert names(one(root, NS_CTXLPS, "LPS")) == names(one(sample, NS_CTXLPS, "LPS"))
    assert one(root, NS_CTXLPS, "IDAM").attrib == one(sample, NS_CTXLPS, "IDAM").attrib == {"R": "4"}

    body, sample_body = one(root, NS_RECSANS, "RECSANSVITALE"), one(sample, NS_RECSANS, "RECSANSVITALE")
    assert names(body) == names(sample_body)
    assert [c.text for c in body] == [c.text for c in sample_body]
    # No wsse:Security with mutual TLS.
    assert not root.findall(
        ".//{http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd}Security"
    )


def test_traits_request_header_values() -> None:
    root = traits_envelope()
    lps = one(root, NS_CTXLPS, "ContexteLPS")
    assert lps.get("Nature") == "CTXLPS" and lps.get("Version") == "01_00"
    assert one(root, NS_CTXBAM, "ContexteBAM").get("Version") == "01_02"
    assert one(root, NS_CTXLPS, "Id").text == one(root, NS_CTXBAM, "Id").text == str(MESSAGE_ID)
    assert (
        one(root, NS_CTXLPS, "Temps").text == one(root, NS_CTXBAM, "Temps").text == "2024-03-05T14:07:09.123Z"
    )
    assert one(root, NS_CTXLPS, "Emetteur").text == "accueil@labo.example"
    assert one(root, NS_CTXBAM, "Emetteur").text == "accueil@labo.example"
    assert one(root, NS_CTXLPS, "IDAM").text == "IDAM-TEST-42"
    assert one(root, NS_CTXLPS, "Version").text == "0.1.0"
    assert one(root, NS_CTXLPS, "Instance").text == INSTANCE
    assert one(root, NS_CTXLPS, "Nom").text == "urn:lps:insdesk:0.1.0"
    couverture = one(root, NS_CTXBAM, "COUVERTURE")
    assert len(couverture) == 0 and not (couverture.text or "").strip()
    assert one(root, NS_WSA, "Action").text == ACTION_TRAITS
    assert one(root, NS_WSA, "MessageID").text == f"uuid:{MESSAGE_ID}"
    assert one(root, NS_WSA, "To").text == "http://127.0.0.1:8765/lps"


def test_traits_request_body_and_birthplace() -> None:
    root = traits_envelope(first_names="PIERRE PAUL JACQUES", birthplace="2B020", birth_name="D'ARC--DUPONT")
    body = one(root, NS_RECSANS, "RECSANSVITALE")
    assert [etree.QName(c).localname for c in body] == [
        "NomNaissance",
        "Prenom",
        "Sexe",
        "DateNaissance",
        "LieuNaissance",
    ]
    assert [c.text for c in body] == ["D'ARC--DUPONT", "PIERRE PAUL JACQUES", "M", "1960-01-01", "2B020"]
    assert not root.findall(f".//{{{NS_RECSANS}}}LieuNaissance") or body[-1].text == "2B020"
    no_place = one(traits_envelope(birthplace="  "), NS_RECSANS, "RECSANSVITALE")
    assert "LieuNaissance" not in [etree.QName(c).localname for c in no_place]


def test_every_request_gets_a_new_message_id_and_time() -> None:
    config = make_config()
    query = TraitsQuery("ADRTROIS", "TOUSSAINT", "M", "1960-01-01")
    first = build_traits_request(config, query)
    second = build_traits_request(config, query)
    assert first.message_id != second.message_id
    assert re.fullmatch(r"uuid:[0-9a-f-]{36}", first.message_id)
    temps = one(etree.fromstring(first.xml), NS_CTXLPS, "Temps").text or ""
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", temps)


def test_query_from_strict_traits_uses_the_conventional_date() -> None:
    traits = StrictTraits("MARTIN", ("CLAIRE", "ANNE"), "CLAIRE", "F", BirthDate.parse("1985-06"), "75115")
    assert TraitsQuery.from_traits(traits) == TraitsQuery("MARTIN", "CLAIRE ANNE", "F", "1985-06-01", "75115")
    assert TraitsQuery.from_traits(traits, first_names="ANNE").first_names == "ANNE"


@pytest.mark.parametrize(
    "overrides",
    [
        {"birth_name": ""},
        {"first_names": "  "},
        {"sex": "X"},
        {"birth_date": "01/01/1960"},
        {"birth_name": "ADR\x00TROIS"},
    ],
)
def test_traits_request_refuses_missing_or_broken_fields(overrides: dict[str, str]) -> None:
    with pytest.raises(BadRequest) as info:
        traits_envelope(**overrides)
    assert info.value.exit_code == 2
    assert "INSi" in info.value.message


@pytest.mark.parametrize(
    ("birth_name", "first_names", "birthplace"),
    [
        ("ADRTROIS", "TOUSSAINT", None),
        ("D'ARC--DUPONT", "PIERRE PAUL", "2B020"),
        ("A&B <C> \"D\" 'E'", "X\rY\tZ\nW", "<&>"),
        ("ÉLODIE ŒUVRE", "ÇA 漢字 😀", "]]>"),
        ("&amp; &#13; &lt;", "\ue000Id\ue001", "\ue000Prenom\ue001"),
    ],
)
def test_traits_request_from_its_template_equals_the_tree(
    birth_name: str, first_names: str, birthplace: str | None
) -> None:
    """The traits request is filled into a template built once per configuration: byte for byte
    what lxml serialises for the same values (markup, CR, non-ASCII, the template's own slot
    markers), and the values read back intact."""
    for config in (
        make_config(),
        dataclasses.replace(make_config(), emitter="a&b <c> \ue000Id\ue001"),  # markers: no template
    ):
        template = envelope_module._traits_template(config, birthplace is not None)
        assert (template is None) == ("\ue000" in config.emitter)
        query = TraitsQuery(birth_name, first_names, "F", "1960-01-01", birthplace)
        fast = build_traits_request(config, query, message_id=MESSAGE_ID, now=NOW)
        fields = {
            "NomNaissance": birth_name,
            "Prenom": first_names,
            "Sexe": "F",
            "DateNaissance": "1960-01-01",
        }
        if birthplace is not None:
            fields["LieuNaissance"] = birthplace
        tree, wsa_id = envelope_module._traits_tree(config, fields, message_id=MESSAGE_ID, now=NOW)
        assert fast.xml == envelope_module._serialize(tree)
        assert fast.message_id == wsa_id == f"uuid:{MESSAGE_ID}"
        body = one(etree.fromstring(fast.xml), NS_RECSANS, "RECSANSVITALE")
        assert [c.text for c in body] == list(fields.values())
        assert one(etree.fromstring(fast.xml), NS_CTXLPS, "Emetteur").text == config.emitter


@pytest.mark.parametrize("bad", ["A\ud800B", "A\ufffeB", "A\uffffB", "A\x0bB"])
def test_traits_request_refuses_characters_xml_does_not_allow(bad: str) -> None:
    """lxml refused them with a bare ValueError (a traceback); the template would write them: a
    clear BadRequest instead, nothing sent."""
    with pytest.raises(BadRequest) as info:
        traits_envelope(first_names=bad)
    assert info.value.exit_code == 2
    assert "Prénom" in info.value.message or "prénom" in info.value.message


# --- carte Vitale search ---------------------------------------------------------------------


def test_vitale_request_validates_against_the_xsds() -> None:
    query = VitaleQuery(
        matricule_od="1 60 01 2B 020 777 13",
        matricule_individu="2850675112345",
        birth_name="ADRTROIS",
        birth_date="1960-00-00",
        birth_rank=1,
        assertion=assertion_xml("160012B020777"),
    )
    envelope = build_vitale_request(make_config(), query, message_id=MESSAGE_ID, now=NOW)
    assert envelope.operation == OPERATION_VITALE and envelope.action == ACTION_VITALE
    root = etree.fromstring(envelope.xml)
    body = one(root, NS_RECVIT, "RECVITALE")
    assert_valid("INSi_RECVITALE_INS.xsd", body)
    assert_valid("ROOT_ctxlps_CTXLPS_V01_00.xsd", one(root, NS_CTXLPS, "ContexteLPS"))
    assert_valid("ROOT_ctxbam_CTXBAM_V01_02.xsd", one(root, NS_CTXBAM, "ContexteBAM"))
    assert [etree.QName(c).localname for c in body] == [
        "MatriculeIndividu",
        "MatriculeOD",
        "NomNaissance",
        "DateNaissance",
        "RangNaissance",
    ]
    od = one(root, NS_RECVIT, "MatriculeOD")
    assert [c.text for c in od] == ["160012B020777", "13"]
    individu = one(root, NS_RECVIT, "MatriculeIndividu")
    assert [c.text for c in individu] == ["2850675112345"]
    assert one(root, NS_RECVIT, "DateNaissance").text == "1960-00-00"
    assert one(root, NS_RECVIT, "RangNaissance").text == "1"
    assert one(root, NS_WSA, "Action").text == ACTION_VITALE
    # The SESAM-Vitale assertion travels in wsse:Security (the WSDL's NO1_Security header part).
    security = one(root, NS_WSSE, "Security")
    assert [etree.QName(c).text for c in security] == [f"{{{NS_SAML2}}}Assertion"]


def test_vitale_request_without_individual_matricule_nor_rank() -> None:
    """The birth rank comes from the card or is left out: never a default of 1."""
    query = VitaleQuery(
        "160012B020777", "ADRTROIS", "1960-01-01", None, assertion=assertion_xml("160012B020777")
    )
    root = etree.fromstring(build_vitale_request(make_config(), query).xml)
    body = one(root, NS_RECVIT, "RECVITALE")
    assert_valid("INSi_RECVITALE_INS.xsd", body)
    assert [etree.QName(c).localname for c in body] == ["MatriculeOD", "NomNaissance", "DateNaissance"]


@pytest.mark.parametrize(
    "assertion",
    [None, "", "<nope/>", "<saml2:Assertion", '<!DOCTYPE x [<!ENTITY e "e">]><x/>'],
)
def test_vitale_request_is_never_built_without_a_saml_assertion(assertion: str | None) -> None:
    query = VitaleQuery("160012B020777", "ADRTROIS", "1960-01-01", 1, assertion=assertion)
    with pytest.raises(BadRequest) as info:
        build_vitale_request(make_config(), query)
    assert info.value.code in ("insi_vitale_assertion", "insi_request")


@pytest.mark.parametrize(
    "overrides",
    [{"matricule_od": "12345"}, {"matricule_od": "160012C020777"}, {"birth_rank": 0}, {"birth_rank": "x"}],
)
def test_vitale_request_refuses_malformed_fields(overrides: dict[str, object]) -> None:
    fields: dict[str, object] = {
        "matricule_od": "160012B020777",
        "birth_name": "ADRTROIS",
        "birth_date": "1960-01-01",
        "birth_rank": 1,
        "assertion": assertion_xml("160012B020777"),
        **overrides,
    }
    with pytest.raises(BadRequest):
        build_vitale_request(make_config(), VitaleQuery(**fields))  # type: ignore[arg-type]


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://127.0.0.1:8765/lps",
        "http://127.8.9.10/lps",
        "http://localhost:1234/",
        "http://LOCALHOST/lps",
        "http://[::1]:8765/lps",
        "http://[::ffff:127.0.0.1]:8765/lps",
        "https://insi.example.org/lps",
        QUALIF_ENDPOINT,
        PROD_ENDPOINT,
    ],
)
def test_allowed_endpoints(endpoint: str) -> None:
    assert make_config(endpoint).endpoint == endpoint


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://insi.example.org/lps",
        "http://10.0.0.5:8765/lps",
        "http://127.0.0.1.evil.example/lps",
        "http://localhost.evil.example/",
        "http://[::2]/lps",
        "ftp://127.0.0.1/lps",
        "127.0.0.1:8765",
        "",
        "https://user:pw@insi.example.org/lps",
        "http://127.0.0.1:99999/lps",
    ],
)
def test_refused_endpoints_raise_bad_request_before_any_call(endpoint: str) -> None:
    with pytest.raises(BadRequest) as info:
        make_config(endpoint)
    assert info.value.exit_code == 2
    assert "INSi" in info.value.message


def test_plain_http_to_a_remote_host_has_a_clear_french_message() -> None:
    with pytest.raises(BadRequest) as info:
        make_config("http://services-ps-tlsm.ameli.fr/lps")
    assert "http://" in info.value.message and "machine locale" in info.value.message


def test_loopback_detection() -> None:
    assert is_loopback_host("127.0.0.1") and is_loopback_host("::1") and is_loopback_host("localhost")
    assert not is_loopback_host("0.0.0.0") and not is_loopback_host("192.168.1.1")


def test_config_checks_its_fields() -> None:
    with pytest.raises(BadRequest):
        make_config(read_timeout=0)
    with pytest.raises(BadRequest):
        make_config(pkcs12_file=Path("a.p12"), cert_file=Path("a.pem"))
    with pytest.raises(BadRequest):
        make_config(key_file=Path("a.key"))
    with pytest.raises(BadRequest):
        InsiConfig(
            endpoint="http://127.0.0.1/lps",
            idam="X",
            software_name="insdesk",
            software_version="1",
            instance_id="not-a-uuid",
            emitter="e",
        )
    with pytest.raises(BadRequest):
        RetryPolicy(max_attempts=0)
    config = make_config(pkcs12_file=Path("a.p12"), pkcs12_password="s3cret-p12", key_password="s3cret-key")
    assert "s3cret" not in repr(config)
    assert make_config().connect_timeout == 5.0 and make_config().read_timeout == 20.0
    as_text = make_config(verify="/etc/ca.pem", cert_file="/etc/c.pem", key_file="")
    assert as_text.verify == Path("/etc/ca.pem") and as_text.cert_file == Path("/etc/c.pem")
    assert as_text.key_file is None


def test_retry_backoff() -> None:
    policy = RetryPolicy(max_attempts=5, backoff_base=0.5, backoff_max=3.0)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_packaged_xsds_equal_the_shared_ones_when_present() -> None:
    if not SHARED_XSD.is_dir():
        pytest.skip("shared reference directory not present")  # the package copy is what tests use
    for path in sorted(XSD_DIR.iterdir()):
        shared = SHARED_XSD / path.name
        assert shared.exists(), path.name
        assert path.read_bytes() == shared.read_bytes(), path.name
