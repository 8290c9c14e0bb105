"""INSi client: hardened parsing, transport errors, TLS, retries (services/insi/).

Answers come from the shared samples (copied in fixtures/insi_samples/), from variants built
here, from httpx.MockTransport, and from tiny local http.server instances (plain, and TLS with a
throwaway CA made with ``cryptography``) for timeouts and mutual TLS.
"""

from __future__ import annotations

import datetime
import http.server
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from lxml import etree

from services.errors import BadRequest, ExternalFailure
from services.identity.matricule import OID_INS_NIA, OID_INS_NIR, compute_key
from services.insi.client import InsiClient
from services.insi.config import InsiConfig, RetryPolicy
from services.insi.envelope import NS_RECSANS, TraitsQuery, VitaleQuery
from services.insi.errors import InsiFault, InsiProtocolError, InsiTlsError, InsiUnavailable
from services.insi.exchange import InsiAnswer, InsiExchange
from services.insi.parse import parse_response
from services.insi.tls import build_ssl_context
from tests.sesam_double import assertion_xml

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "fixtures" / "insi_samples"
SHARED = ROOT.parent / "shared" / "reference" / "insi"
INSTANCE = "b3549edd-4ae9-472a-b26f-fd2fb4ef397f"
SOAP = "http://www.w3.org/2003/05/soap-envelope"
RES = "http://www.cnamts.fr/INSiResultat"
QUERY = TraitsQuery("ADRTROIS", "TOUSSAINT", "M", "1960-01-01")


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


CR00 = "response_CR00_ADRTROIS_TOUSSAINT.xml"
CR02 = "response_CR02_multiple_DE_VINCI_LEONARDO.xml"
FAULT550 = "fault_siram_100_desir_550_unknown_idam.xml"


def make_config(endpoint: str = "http://127.0.0.1:9/lps", **kwargs: object) -> InsiConfig:
    fields: dict[str, object] = {
        "endpoint": endpoint,
        "idam": "IDAM-TEST-42",
        "software_name": "insdesk",
        "software_version": "0.1.0",
        "instance_id": INSTANCE,
        "emitter": "accueil@labo.example",
        "retry": RetryPolicy(max_attempts=3, backoff_base=1.0, backoff_max=8.0, total_deadline=60.0),
        **kwargs,
    }
    return InsiConfig(**fields)  # type: ignore[arg-type]


class FakeTime:
    """A clock that only moves when the client sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def mock_client(
    handler: Callable[[httpx.Request], httpx.Response], config: InsiConfig | None = None
) -> tuple[InsiClient, FakeTime]:
    """A client sending on a MockTransport the way it sends on its own transport in production
    (straight on the transport, no ``httpx.Client`` around it)."""
    fake = FakeTime()
    client = InsiClient(
        config or make_config(), transport=httpx.MockTransport(handler), clock=fake.clock, sleep=fake.sleep
    )
    return client, fake


def soap_response(body: bytes, status: int = 200) -> httpx.Response:
    return httpx.Response(
        status, content=body, headers={"content-type": "application/soap+xml; charset=utf-8"}
    )


def fault_xml(siram: str, code: str, text: str = "Service momentanément indisponible.") -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soap:Envelope xmlns:soap="{SOAP}"><soap:Body><soap:Fault>'
        f"<soap:Code><soap:Value>soap:Receiver</soap:Value><soap:Subcode><soap:Value>soap:{siram}</soap:Value>"
        "</soap:Subcode></soap:Code>"
        f'<soap:Reason><soap:Text xml:lang="fr">{text}</soap:Text></soap:Reason>'
        f'<soap:Detail><siram:Erreur xmlns:siram="urn:siram" code="{code}" severite="erreur">{text}'
        "</siram:Erreur></soap:Detail></soap:Fault></soap:Body></soap:Envelope>"
    ).encode()


# --- the shared samples ----------------------------------------------------------------------


def test_samples_are_the_shared_ones_when_present() -> None:
    if not SHARED.is_dir():
        pytest.skip("shared reference directory not present")  # the fixtures copy is what tests use
    for path in sorted(SAMPLES.glob("*.xml")):
        assert path.read_bytes() == (SHARED / path.name).read_bytes(), path.name


def test_sample_cr00_parses_unchanged() -> None:
    answer = parse_response(sample(CR00))
    assert answer.cr == "00" and answer.label == "OK" and answer.found
    identity = answer.identity
    assert identity is not None
    assert identity.matricule.number == "160012B020777" and identity.matricule.key == "13"
    assert identity.oid == OID_INS_NIR and not identity.is_nia
    assert identity.valid_from is None and identity.valid_to is None
    assert identity.history == []
    traits = identity.traits
    assert (traits.birth_name, traits.first_names, traits.first_name) == (
        "ADRTROIS",
        ("TOUSSAINT",),
        "TOUSSAINT",
    )
    assert (traits.sex, traits.birth_date.iso(), traits.birthplace) == ("M", "1960-01-01", "2B020")
    assert identity.warnings == []  # 2B020 for a birth in 1960 is normal for INSi
    assert identity.ins_cli_dict() == {"matricule": "160012B020777", "key": "13", "oid": OID_INS_NIR}


def test_sample_cr02_parses_unchanged() -> None:
    answer = parse_response(sample(CR02))
    assert answer == InsiAnswer("02", "Plusieurs identites trouvees", None)


def test_sample_fault_parses_unchanged() -> None:
    with pytest.raises(InsiFault) as info:
        parse_response(sample(FAULT550))
    err = info.value
    assert err.code == "siram_100/desir_550"
    assert err.siram_code == "siram_100" and err.error_code == "desir_550"
    assert err.severity == "erreur" and err.message_id == "uuid:b3549edd-4ae9-472a-b26f-fd2fb4ef397f"
    assert not err.retryable
    assert isinstance(err, ExternalFailure) and err.exit_code == 3
    assert "numéro d'autorisation" in err.message and "inutile de réessayer" in err.message
    assert "Numéro d'autorisation du logiciel inconnu." in err.server_message
    assert err.as_dict()["code"] == "siram_100/desir_550"


# --- namespace variants ----------------------------------------------------------------------


def resultat(inner: str, *, prefix: str = "", soap_prefix: str = "S", wrapper: bool = False) -> bytes:
    """A full answer; ``prefix`` '' = default namespace, else ``prefix:``-qualified elements."""
    p = f"{prefix}:" if prefix else ""
    decl = f'xmlns:{prefix}="{RES}"' if prefix else f'xmlns="{RES}"'
    inner = inner.replace("<", f"<{p}").replace(f"<{p}/", f"</{p}")
    body = f"<{p}RESULTAT {decl}>{inner}</{p}RESULTAT>"
    if wrapper:
        body = f"<w:reponse xmlns:w='urn:wrapper'>{body}</w:reponse>"
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><{soap_prefix}:Envelope xmlns:{soap_prefix}="{SOAP}">'
        f"<{soap_prefix}:Header/><{soap_prefix}:Body>{body}</{soap_prefix}:Body></{soap_prefix}:Envelope>"
    ).encode()


def ins(number: str, oid: str = OID_INS_NIR, extra: str = "", key: str | None = None) -> str:
    key = compute_key(number) if key is None else key
    return (
        f"<IdIndividu><NumIdentifiant>{number}</NumIdentifiant><Cle>{key}</Cle></IdIndividu>"
        f"<OID>{oid}</OID>{extra}"
    )


TIQ = (
    "<TIQ><NomNaissance>ADRTROIS</NomNaissance><ListePrenom>TOUSSAINT</ListePrenom><Sexe>M</Sexe>"
    "<DateNaissance>1960-01-01</DateNaissance><LieuNaissance>2B020</LieuNaissance></TIQ>"
)
CR_OK = "<CR><CodeCR>00</CodeCR><LibelleCR>OK</LibelleCR></CR>"


@pytest.mark.parametrize("prefix", ["", "ns2", "ns0", "insi_resultat_ins", "x"])
@pytest.mark.parametrize("soap_prefix", ["S", "soap", "env", "soapenv"])
def test_any_prefix_or_default_namespace(prefix: str, soap_prefix: str) -> None:
    xml = resultat(
        f"{CR_OK}<INDIVIDU><INSACTIF>{ins('160012B020777')}</INSACTIF>{TIQ}</INDIVIDU>",
        prefix=prefix,
        soap_prefix=soap_prefix,
    )
    answer = parse_response(xml)
    assert answer.identity is not None and answer.identity.matricule.value == "160012B02077713"


def test_wrong_namespace_is_not_taken_for_resultat() -> None:
    xml = resultat(CR_OK).replace(RES.encode(), b"http://example.org/other")
    with pytest.raises(InsiProtocolError):
        parse_response(xml)


def test_unqualified_children_and_a_wrapper_element_are_accepted() -> None:
    inner = f"{CR_OK}<INDIVIDU><INSACTIF>{ins('160012B020777')}</INSACTIF>{TIQ}</INDIVIDU>"
    xml = (
        f'<soap:Envelope xmlns:soap="{SOAP}"><soap:Body><ns2:RESULTAT xmlns:ns2="{RES}">{inner}'
        "</ns2:RESULTAT></soap:Body></soap:Envelope>"
    ).encode()
    assert parse_response(xml).found
    assert parse_response(resultat(inner, prefix="ns2", wrapper=True)).found


def test_reordered_optional_elements_prenom_and_validity_dates() -> None:
    tiq = (
        "<TIQ><LieuNaissance>2B020</LieuNaissance><Sexe>M</Sexe><Prenom>PIERRE</Prenom>"
        "<DateNaissance>1960-01-01</DateNaissance><ListePrenom>PIERRE PAUL  JACQUES</ListePrenom>"
        "<NomNaissance>ADRTROIS</NomNaissance></TIQ>"
    )
    active = (
        f"<INSACTIF><OID>{OID_INS_NIR}</OID><DateFin>2030-12-31+01:00</DateFin>"
        "<IdIndividu><Cle>13</Cle><NumIdentifiant>160012B020777</NumIdentifiant></IdIndividu>"
        "<DateDeb>2020-01-01Z</DateDeb></INSACTIF>"
    )
    xml = resultat(
        f"<CR><LibelleCR>OK</LibelleCR><CodeCR>00</CodeCR></CR><INDIVIDU>{tiq}{active}</INDIVIDU>",
        prefix="ns2",
    )
    identity = parse_response(xml).identity
    assert identity is not None
    assert identity.valid_from == datetime.date(2020, 1, 1) and identity.valid_to == datetime.date(
        2030, 12, 31
    )
    assert identity.traits.first_names == ("PIERRE", "PAUL", "JACQUES")
    assert identity.traits.first_name == "PIERRE"
    assert identity.traits.first_names_text == "PIERRE PAUL JACQUES"


def test_prenom_without_listeprenom_and_no_birthplace() -> None:
    tiq = (
        "<TIQ><NomNaissance>DUPONT</NomNaissance><Prenom>JEAN</Prenom><Sexe>M</Sexe>"
        "<DateNaissance>1950-05-05</DateNaissance></TIQ>"
    )
    identity = parse_response(
        resultat(f"{CR_OK}<INDIVIDU><INSACTIF>{ins('150057511200142'[:13])}</INSACTIF>{tiq}</INDIVIDU>")
    ).identity
    assert identity is not None
    assert identity.traits.first_names == ("JEAN",) and identity.traits.birthplace is None


def test_an_active_ins_without_its_key_or_with_a_wrong_one_is_refused() -> None:
    """Issue #12 item 6: an answer without ``<Cle>`` is refused (its key was computed, before);
    an active INS whose key does not check makes the answer unusable (docs/cli.md, insi search)."""
    no_key = (
        "<INSACTIF><IdIndividu><NumIdentifiant>160012B020777</NumIdentifiant></IdIndividu>"
        f"<OID>{OID_INS_NIR}</OID></INSACTIF>"
    )
    with pytest.raises(InsiProtocolError) as absent:
        parse_response(resultat(f"{CR_OK}<INDIVIDU>{no_key}{TIQ}</INDIVIDU>"))
    assert "Cle" in absent.value.message and absent.value.exit_code == 3
    with pytest.raises(InsiProtocolError) as info:
        parse_response(
            resultat(
                f"{CR_OK}<INDIVIDU><INSACTIF>{ins('160012B020777', key='14')}</INSACTIF>{TIQ}</INDIVIDU>"
            )
        )
    assert "clé" in info.value.message


def test_nia_oid() -> None:
    nia = "8600199123456"
    identity = parse_response(
        resultat(
            f"{CR_OK}<INDIVIDU><INSACTIF>{ins(nia, OID_INS_NIA)}</INSACTIF>{TIQ}</INDIVIDU>", prefix="ns2"
        )
    ).identity
    assert identity is not None and identity.is_nia and identity.matricule.is_nia
    assert identity.oid == OID_INS_NIA and identity.warnings == []


def test_inshisto_zero_one_or_several_including_the_active_ins() -> None:
    active = "160012B020777"
    older = "760012B020123"
    older_dates = "<DateDeb>2000-01-01</DateDeb><DateFin>2018-12-31</DateFin>"
    histo = (
        f"<INSHISTO>{ins(active, extra='<DateDeb>2019-01-01</DateDeb>')}</INSHISTO>"
        f"<INSHISTO>{ins(older, OID_INS_NIA, extra=older_dates)}</INSHISTO>"
    )
    identity = parse_response(
        resultat(f"{CR_OK}<INDIVIDU><INSACTIF>{ins(active)}</INSACTIF>{histo}{TIQ}</INDIVIDU>", prefix="ns2")
    ).identity
    assert identity is not None
    assert [h.matricule.number for h in identity.history] == [active, older]
    assert identity.history[0].matricule == identity.matricule  # equal to the active INS: kept
    assert identity.history[1].oid == OID_INS_NIA
    assert identity.history[1].as_cli_dict() == {
        "matricule": older,
        "key": compute_key(older),
        "oid": OID_INS_NIA,
        "valid_from": "2000-01-01",
        "valid_to": "2018-12-31",
        "key_valid": True,
    }


@pytest.mark.parametrize(
    ("entry", "shown"),
    [
        ("<IdIndividu><NumIdentifiant>760012B020123</NumIdentifiant><Cle>00</Cle></IdIndividu>", "00"),
        ("<IdIndividu><NumIdentifiant>760012B020123</NumIdentifiant></IdIndividu>", ""),
        ("<IdIndividu><NumIdentifiant>76001</NumIdentifiant><Cle>12</Cle></IdIndividu>", "12"),
    ],
    ids=["wrong-key", "no-key", "not-a-matricule"],
)
def test_cnda_2_08_a_history_entry_whose_key_does_not_check_keeps_the_answer_usable(
    entry: str, shown: str
) -> None:
    active = "160012B020777"
    histo = f"<INSHISTO>{entry}<OID>{OID_INS_NIA}</OID></INSHISTO>"
    identity = parse_response(
        resultat(f"{CR_OK}<INDIVIDU><INSACTIF>{ins(active)}</INSACTIF>{histo}{TIQ}</INDIVIDU>")
    ).identity
    assert identity is not None and identity.matricule.number == active
    (kept,) = identity.history
    assert kept.key_valid is False and kept.matricule.key == shown
    assert kept.as_cli_dict()["key_valid"] is False
    assert any(w.field == "history" for w in identity.warnings)


def test_insi_traits_are_never_refused_by_local_rules() -> None:
    tiq = (
        "<TIQ><NomNaissance>D'ÆION</NomNaissance><ListePrenom>CŒUR marie</ListePrenom><Sexe>I</Sexe>"
        "<DateNaissance>1848-00-00</DateNaissance><LieuNaissance>00000</LieuNaissance></TIQ>"
    )
    identity = parse_response(
        resultat(f"{CR_OK}<INDIVIDU><INSACTIF>{ins('160012B020777')}</INSACTIF>{tiq}</INDIVIDU>")
    ).identity
    assert identity is not None
    assert identity.traits.birth_name == "D'ÆION" and identity.traits.first_names == ("CŒUR", "marie")
    assert identity.traits.sex == "I" and identity.traits.birth_date.uncertain
    assert identity.warnings  # odd values are reported, not refused


def test_unknown_oid_is_kept_with_a_warning() -> None:
    identity = parse_response(
        resultat(f"{CR_OK}<INDIVIDU><INSACTIF>{ins('160012B020777', '1.2.3.4')}</INSACTIF>{TIQ}</INDIVIDU>")
    ).identity
    assert identity is not None and identity.oid == "1.2.3.4"
    assert any(w.field == "oid" for w in identity.warnings)


def test_cr01_and_cr02_carry_no_identity() -> None:
    for code in ("01", "02"):
        answer = parse_response(
            resultat(f"<CR><CodeCR>{code}</CodeCR><LibelleCR>x</LibelleCR></CR>", prefix="ns2")
        )
        assert answer.cr == code and answer.identity is None and not answer.found


@pytest.mark.parametrize(
    "inner",
    [
        "<CR><LibelleCR>OK</LibelleCR></CR>",  # no CodeCR
        "<CR><CodeCR>07</CodeCR><LibelleCR>?</LibelleCR></CR>",  # unknown CR
        CR_OK,  # 00 without INDIVIDU
        f"{CR_OK}<INDIVIDU>{TIQ}</INDIVIDU>",  # no INSACTIF
        f"{CR_OK}<INDIVIDU><INSACTIF>{ins('160012B020777')}</INSACTIF></INDIVIDU>",  # no TIQ
        f"{CR_OK}<INDIVIDU><INSACTIF>{ins('160012B020777')}</INSACTIF><TIQ><NomNaissance>A</NomNaissance></TIQ></INDIVIDU>",
        f"{CR_OK}<INDIVIDU><INSACTIF><IdIndividu><NumIdentifiant>12</NumIdentifiant></IdIndividu><OID>{OID_INS_NIR}</OID></INSACTIF>{TIQ}</INDIVIDU>",
        f"{CR_OK}<INDIVIDU><INSACTIF>{ins('160012B020777', 'pas-un-oid')}</INSACTIF>{TIQ}</INDIVIDU>",
        f"{CR_OK}<INDIVIDU><INSACTIF>{ins('160012B020777', extra='<DateDeb>x</DateDeb>')}</INSACTIF>{TIQ}"
        "</INDIVIDU>",
    ],
)
def test_unexpected_content_is_a_protocol_error(inner: str) -> None:
    with pytest.raises(InsiProtocolError) as info:
        parse_response(resultat(inner, prefix="ns2"))
    assert info.value.message.startswith("Réponse INSi inattendue")
    assert not info.value.retryable


def test_not_soap_is_a_protocol_error() -> None:
    for body in (b"<RESULTAT/>", b'<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"/>'):
        with pytest.raises(InsiProtocolError):
            parse_response(body)


# --- hardening -------------------------------------------------------------------------------

BOMB = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10)
    )
    + f']><soap:Envelope xmlns:soap="{SOAP}"><soap:Body><RESULTAT xmlns="{RES}"><CR><CodeCR>01</CodeCR>'
    "<LibelleCR>&lol9;</LibelleCR></CR></RESULTAT></soap:Body></soap:Envelope>"
)
XXE = (
    '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    f'<soap:Envelope xmlns:soap="{SOAP}"><soap:Body><RESULTAT xmlns="{RES}"><CR><CodeCR>01</CodeCR>'
    "<LibelleCR>&xxe;</LibelleCR></CR></RESULTAT></soap:Body></soap:Envelope>"
)


@pytest.mark.parametrize("body", [BOMB.encode(), XXE.encode(), BOMB.encode("utf-16"), XXE.encode("utf-16")])
def test_xml_bomb_and_external_entity_are_refused(body: bytes) -> None:
    started = time.perf_counter()
    with pytest.raises(InsiProtocolError) as info:
        parse_response(body)
    assert time.perf_counter() - started < 30  # against a hang only: nothing was expanded
    assert info.value.code == "insi_protocol_dtd"
    assert "DOCTYPE" in info.value.message and not info.value.retryable
    assert "root:" not in info.value.message + (info.value.detail or "")


def test_too_large_body_is_refused() -> None:
    with pytest.raises(InsiProtocolError) as info:
        parse_response(sample(CR00), max_bytes=100)
    assert info.value.code == "insi_protocol_too_large"


def test_truncated_xml_is_a_protocol_error() -> None:
    body = sample(CR00)
    for cut in (len(body) // 3, len(body) // 2, len(body) - 20):
        with pytest.raises(InsiProtocolError) as info:
            parse_response(body[:cut])
        assert info.value.code == "insi_protocol_malformed"
        assert "tronquée ou mal formée" in info.value.message and info.value.retryable


def test_empty_body_is_a_protocol_error() -> None:
    with pytest.raises(InsiProtocolError):
        parse_response(b"  \n")


# --- faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("siram", "code", "expected", "retryable", "words"),
    [
        ("siram_40", "desir_1020", "siram_40/desir_1020", True, "Réessayez dans quelques minutes"),
        ("siram_40", "insi_102", "siram_40/insi_102", False, "support informatique"),
        ("siram_100", "desir_550", "siram_100/desir_550", False, "IDAM"),
        ("siram_100", "DESIR_560", "siram_100/desir_560", False, "Certificat de l'établissement refusé"),
        ("siram_50", "desir_999", "siram_50/desir_999", False, "Inutile de réessayer"),
    ],
)
def test_fault_codes(siram: str, code: str, expected: str, retryable: bool, words: str) -> None:
    with pytest.raises(InsiFault) as info:
        parse_response(fault_xml(siram, code, "Texte du serveur."))
    err = info.value
    assert err.code == expected and err.retryable is retryable
    assert words in err.message and "Texte du serveur." in err.message


def test_fault_with_other_prefixes() -> None:
    xml = (
        f'<e:Envelope xmlns:e="{SOAP}"><e:Body><e:Fault><e:Code><e:Value>e:Receiver</e:Value>'
        "<e:Subcode><e:Value>x:siram_40</e:Value></e:Subcode></e:Code>"
        '<e:Reason><e:Text xml:lang="en">Unavailable</e:Text>'
        '<e:Text xml:lang="fr">Indisponible</e:Text></e:Reason>'
        '<e:Detail><Erreur xmlns="urn:siram" code="desir_1020" severite="fatale">'
        "Service indisponible</Erreur>"
        "</e:Detail></e:Fault></e:Body></e:Envelope>"
    ).encode()
    with pytest.raises(InsiFault) as info:
        parse_response(xml)
    assert info.value.code == "siram_40/desir_1020" and info.value.severity == "fatale"
    assert "Indisponible" in info.value.server_message and "Unavailable" not in info.value.server_message


# --- client over MockTransport ---------------------------------------------------------------


def test_search_traits_returns_the_exchange() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return soap_response(sample(CR00))

    client, _ = mock_client(handler)
    exchange = client.search_traits(QUERY)
    assert isinstance(exchange, InsiExchange)
    assert exchange.answer is not None and exchange.cr == "00"
    assert exchange.operation == "rechercherInsAvecTraitsIdentite"
    assert exchange.http_status == 200 and exchange.attempts == 1 and exchange.duration_ms >= 0
    assert exchange.response_xml == sample(CR00).decode()
    assert exchange.request_xml == seen[0].content.decode()
    assert exchange.message_id in exchange.request_xml and exchange.error_code is None
    request = seen[0]
    assert request.method == "POST" and str(request.url) == "http://127.0.0.1:9/lps"
    assert request.headers["content-type"].startswith("application/soap+xml; charset=utf-8; action=")
    assert "rechercherInsAvecTraitsIdentite" in request.headers["content-type"]
    body = etree.fromstring(request.content).find(f".//{{{NS_RECSANS}}}RECSANSVITALE")
    assert body is not None and [c.text for c in body] == ["ADRTROIS", "TOUSSAINT", "M", "1960-01-01"]


def test_the_request_sent_on_the_transport_is_whole() -> None:
    """Sent straight on the transport (as on the client's own in production), the request carries
    what an ``httpx.Client`` would have added that INSi needs: Host, the body's length, the
    operation's content type, our user agent, and the configured timeouts; nothing else (no
    cookie, no compression asked)."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return soap_response(sample(CR00))

    config = make_config(connect_timeout=3.0, read_timeout=7.0)
    client, _ = mock_client(handler, config)
    client.search_traits(QUERY)
    (request,) = seen
    headers = request.headers
    assert headers["host"] == "127.0.0.1:9"
    assert int(headers["content-length"]) == len(request.content) > 0
    assert headers["content-type"] == (
        'application/soap+xml; charset=utf-8; action="urn:ServiceIdentiteCertifiee:1.0.0:'
        'rechercherInsAvecTraitsIdentite"'
    )
    assert headers["user-agent"] == "insdesk/0.1.0"
    assert "cookie" not in headers and "accept-encoding" not in headers
    assert request.extensions["timeout"] == {"connect": 3.0, "read": 7.0, "write": 7.0, "pool": 3.0}


def test_the_timeouts_sent_are_cut_to_what_is_left_of_the_total_deadline() -> None:
    timeouts: list[dict[str, float]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        timeouts.append(request.extensions["timeout"])
        return httpx.Response(503, text="busy")

    retry = RetryPolicy(max_attempts=2, backoff_base=9.0, backoff_max=9.0, total_deadline=12.0)
    client, fake = mock_client(handler, make_config(read_timeout=10.0, connect_timeout=5.0, retry=retry))
    with pytest.raises(InsiUnavailable):
        client.search_traits(QUERY)
    assert fake.sleeps == [9.0]
    assert timeouts[0] == {"connect": 5.0, "read": 10.0, "write": 10.0, "pool": 5.0}
    assert timeouts[1] == {"connect": 3.0, "read": 3.0, "write": 3.0, "pool": 3.0}


def test_an_injected_httpx_client_is_sent_through_and_left_open() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return soap_response(sample(CR00))

    http = httpx.Client(transport=httpx.MockTransport(handler), headers={"X-Site": "labo"})
    with InsiClient(make_config(), http=http) as client:
        assert client.search_traits(QUERY).cr == "00"
    assert seen[0].headers["x-site"] == "labo"  # the client's own headers went with it
    assert not http.is_closed
    http.close()


class RecordingTransport(httpx.MockTransport):
    def __init__(self) -> None:
        super().__init__(lambda request: soap_response(sample(CR00)))
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


def test_an_injected_transport_is_left_open_the_clients_own_is_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    injected = RecordingTransport()
    with InsiClient(make_config(), transport=injected) as client:
        assert client.search_traits(QUERY).cr == "00"
    assert injected.closed == 0

    own = RecordingTransport()
    monkeypatch.setattr("services.insi.client.build_transport", lambda config: own)
    with InsiClient(make_config()) as client:
        assert client.search_traits(QUERY).cr == "00"
    assert own.closed == 1


def test_a_client_and_a_transport_both_injected_is_a_programming_error() -> None:
    transport = httpx.MockTransport(lambda request: soap_response(sample(CR00)))
    with pytest.raises(ValueError):
        InsiClient(make_config(), http=httpx.Client(transport=transport), transport=transport)


def test_search_vitale() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert b"rechercherInsAvecCarteVitale" in request.content
        return soap_response(sample(CR00))

    client, _ = mock_client(handler)
    query = VitaleQuery(
        "160012B02077713", "ADRTROIS", "1960-01-01", 1, assertion=assertion_xml("160012B020777")
    )
    exchange = client.search_vitale(query)
    assert exchange.operation == "rechercherInsAvecCarteVitale" and exchange.cr == "00"


def test_bad_query_raises_bad_request_without_any_call() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        pytest.fail("no HTTP call expected")

    client, _ = mock_client(handler)
    with pytest.raises(BadRequest):
        client.search_traits(TraitsQuery("", "A", "M", "1960-01-01"))


def test_fault_over_http_500_and_the_failed_exchange_is_attached() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return soap_response(sample(FAULT550), 500)

    client, fake = mock_client(handler)
    with pytest.raises(InsiFault) as info:
        client.search_traits(QUERY)
    assert info.value.code == "siram_100/desir_550"
    assert len(calls) == 1 and fake.sleeps == []  # never retried
    [exchange] = info.value.exchanges
    assert exchange.answer is None and exchange.http_status == 500 and exchange.attempts == 1
    assert exchange.error_code == "siram_100/desir_550" and "desir_550" in (exchange.response_xml or "")


def test_desir_1020_is_retried_with_backoff_then_succeeds() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) < 3:
            return soap_response(fault_xml("siram_40", "desir_1020"), 500)
        return soap_response(sample(CR00))

    client, fake = mock_client(handler)
    exchange = client.search_traits(QUERY)
    assert len(calls) == 3 and exchange.attempts == 3 and exchange.cr == "00"
    assert fake.sleeps == [1.0, 2.0]
    assert exchange.duration_ms == 3000
    ids = {
        etree.fromstring(c.content).findtext(".//{http://www.w3.org/2005/08/addressing}MessageID")
        for c in calls
    }
    assert len(ids) == 3  # each attempt is a new message


def test_desir_1020_gives_up_after_max_attempts() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return soap_response(fault_xml("siram_40", "desir_1020"), 500)

    client, fake = mock_client(handler)
    with pytest.raises(InsiFault) as info:
        client.search_traits(QUERY)
    assert len(calls) == 3 and fake.sleeps == [1.0, 2.0]
    assert info.value.retryable and info.value.code == "siram_40/desir_1020"
    assert info.value.exchanges[0].attempts == 3 and "3 tentatives" in (info.value.detail or "")


def test_retries_honour_the_total_deadline() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return soap_response(fault_xml("siram_40", "desir_1020"), 500)

    config = make_config(retry=RetryPolicy(max_attempts=10, backoff_base=1.0, total_deadline=2.5))
    client, fake = mock_client(handler, config)
    with pytest.raises(InsiFault):
        client.search_traits(QUERY)
    assert len(calls) == 2 and fake.sleeps == [1.0]


@pytest.mark.parametrize("code", ["desir_550", "DESIR_560", "insi_102", "desir_1234"])
def test_non_retryable_faults_are_never_retried(code: str) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return soap_response(fault_xml("siram_100", code), 500)

    client, fake = mock_client(handler)
    with pytest.raises(InsiFault) as info:
        client.search_traits(QUERY)
    assert len(calls) == 1 and fake.sleeps == [] and not info.value.retryable


def test_http_503_is_unavailable_and_retried() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(503, text="Service Unavailable", headers={"content-type": "text/plain"})

    client, fake = mock_client(handler)
    with pytest.raises(InsiUnavailable) as info:
        client.search_traits(QUERY)
    err = info.value
    assert len(calls) == 3 and err.retryable and err.http_status == 503 and err.code == "insi_http_503"
    assert fake.sleeps == [1.0, 2.0]
    assert "indisponible" in err.message and "Réessayez" in err.message
    assert err.exit_code == 3


def test_html_page_instead_of_soap() -> None:
    calls = []
    page = b"<!DOCTYPE html><html><head><title>Portail</title></head><body>Connexion</body></html>"

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, content=page, headers={"content-type": "text/html"})

    client, _ = mock_client(handler)
    with pytest.raises(InsiUnavailable) as info:
        client.search_traits(QUERY)
    assert len(calls) == 1 and info.value.kind == "html" and not info.value.retryable
    assert "page web" in info.value.message

    def maintenance(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, content=page)  # no content-type: sniffed

    client, _ = mock_client(maintenance)
    with pytest.raises(InsiUnavailable) as info:
        client.search_traits(QUERY)
    assert info.value.kind == "html" and info.value.retryable and "maintenance" in info.value.message


def test_truncated_answer_over_http() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return soap_response(sample(CR00)[:400])

    client, fake = mock_client(handler)
    with pytest.raises(InsiProtocolError) as info:
        client.search_traits(QUERY)
    assert info.value.code == "insi_protocol_malformed" and fake.sleeps == []
    assert info.value.exchanges[0].response_xml == sample(CR00)[:400].decode()


def test_bomb_over_http_is_refused() -> None:
    client, _ = mock_client(lambda request: soap_response(BOMB.encode()))
    with pytest.raises(InsiProtocolError) as info:
        client.search_traits(QUERY)
    assert info.value.code == "insi_protocol_dtd"


def test_streamed_body_over_the_limit_is_refused() -> None:
    big = b"<a>" + b"x" * 5000 + b"</a>"
    client, _ = mock_client(lambda request: soap_response(big), make_config(max_response_bytes=2048))
    with pytest.raises(InsiProtocolError) as info:
        client.search_traits(QUERY)
    assert info.value.code == "insi_protocol_too_large"


class Chunks(httpx.SyncByteStream):
    """An answer body arriving in ``count`` chunks, ``pause`` seconds apart; counts what was sent."""

    def __init__(self, chunk: bytes, count: int, pause: float = 0.0) -> None:
        self.chunk, self.count, self.pause, self.sent = chunk, count, pause, 0

    def __iter__(self) -> Iterator[bytes]:
        for _ in range(self.count):
            if self.pause:
                time.sleep(self.pause)
            self.sent += 1
            yield self.chunk


def streamed(stream: Chunks) -> httpx.Response:
    return httpx.Response(200, stream=stream, headers={"content-type": "application/soap+xml; charset=utf-8"})


def test_a_streamed_answer_is_refused_as_soon_as_it_passes_the_limit() -> None:
    """The size bound holds while the answer arrives: a 10 MB answer is not read whole first."""
    stream = Chunks(b"<a>" + b"x" * 1021, 10_000)
    client, _ = mock_client(lambda request: streamed(stream), make_config(max_response_bytes=4096))
    with pytest.raises(InsiProtocolError) as info:
        client.search_traits(QUERY)
    assert info.value.code == "insi_protocol_too_large"
    assert stream.sent <= 5


@pytest.mark.parametrize("injected", ["transport", "http"])
def test_an_injected_client_trickling_its_answer_is_cut_at_the_total_deadline(injected: str) -> None:
    """An injected transport or client has no deadline backend: the deadline is checked between
    the body's chunks, so a body trickling in (100 ms a chunk, 5 minutes in all) still ends the call."""
    stream = Chunks(b" ", 3000, pause=0.1)
    retry = RetryPolicy(max_attempts=1, total_deadline=0.5)
    transport = httpx.MockTransport(lambda request: streamed(stream))
    config = make_config(retry=retry)
    client = (
        InsiClient(config, transport=transport)
        if injected == "transport"
        else InsiClient(config, http=httpx.Client(transport=transport))
    )
    with pytest.raises(InsiUnavailable) as info:
        client.search_traits(QUERY)
    assert info.value.kind == "deadline" and info.value.code == "insi_timeout_total"
    assert stream.sent < 3000  # bound against a hang: the call stopped long before the end


@pytest.mark.parametrize(
    ("status", "kind"),
    [(404, InsiUnavailable), (403, InsiTlsError), (400, InsiProtocolError), (200, InsiProtocolError)],
)
def test_other_http_statuses(status: int, kind: type[Exception]) -> None:
    client, fake = mock_client(lambda request: httpx.Response(status, text="nope"))
    with pytest.raises(kind):
        client.search_traits(QUERY)
    assert fake.sleeps == []


@pytest.mark.parametrize(
    ("exc", "kind", "code"),
    [
        (httpx.ConnectTimeout("timed out"), "connect_timeout", "insi_timeout_connect"),
        (httpx.ConnectError("[Errno 111] Connection refused"), "connect", "insi_connect"),
    ],
)
def test_connect_timeout_and_connect_error_are_retried_and_say_connexion(
    exc: Exception, kind: str, code: str
) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise exc

    client, fake = mock_client(handler)
    with pytest.raises(InsiUnavailable) as info:
        client.search_traits(QUERY)
    err = info.value
    assert err.kind == kind and err.code == code and err.retryable
    assert len(calls) == 3 and fake.sleeps == [1.0, 2.0]
    assert "connexion" in err.message.lower()
    assert err.exchanges[0].http_status is None and err.exchanges[0].response_xml is None


def test_read_timeout_from_mock_is_not_retried_and_says_reponse() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ReadTimeout("timed out")

    client, fake = mock_client(handler)
    with pytest.raises(InsiUnavailable) as info:
        client.search_traits(QUERY)
    assert len(calls) == 1 and fake.sleeps == [] and info.value.kind == "read_timeout"
    assert "délai de réponse" in info.value.message and info.value.retryable


def test_remote_protocol_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")

    client, fake = mock_client(handler)
    with pytest.raises(InsiUnavailable) as info:
        client.search_traits(QUERY)
    assert info.value.kind == "network" and fake.sleeps == []


# --- real sockets: timeouts, refused connection ----------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        server: LocalServer = self.server  # type: ignore[assignment]
        length = int(self.headers.get("content-length", "0"))
        server.requests.append(self.rfile.read(length))
        server.paths.append(self.path)
        if server.delay:
            time.sleep(server.delay)
        body = server.body
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/soap+xml; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass

    def log_message(self, format: str, *args: object) -> None:
        pass


class LocalServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        body: bytes,
        *,
        delay: float = 0.0,
        context: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__((host, 0), _Handler)
        self.body = body
        self.delay = delay
        self.requests: list[bytes] = []
        self.paths: list[str] = []
        if context is not None:
            self.socket = context.wrap_socket(self.socket, server_side=True)

    def handle_error(self, request: object, client_address: object) -> None:
        pass

    @property
    def port(self) -> int:
        return int(self.server_address[1])


@pytest.fixture
def serve() -> Iterator[Callable[..., LocalServer]]:
    servers: list[tuple[LocalServer, threading.Thread]] = []

    def start(body: bytes, **kwargs: object) -> LocalServer:
        server = LocalServer(body, **kwargs)  # type: ignore[arg-type]
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        servers.append((server, thread))
        return server

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=2)


def test_real_http_round_trip(serve: Callable[..., LocalServer]) -> None:
    server = serve(sample(CR00))
    with InsiClient(make_config(f"http://127.0.0.1:{server.port}/lps")) as client:
        exchange = client.search_traits(QUERY)
    assert exchange.cr == "00" and len(server.requests) == 1
    assert server.requests[0].decode() == exchange.request_xml


def test_read_timeout_on_a_real_socket(serve: Callable[..., LocalServer]) -> None:
    server = serve(sample(CR00), delay=10.0)
    config = make_config(f"http://127.0.0.1:{server.port}/lps", read_timeout=0.2)
    started = time.perf_counter()
    with InsiClient(config) as client, pytest.raises(InsiUnavailable) as info:
        client.search_traits(QUERY)
    assert time.perf_counter() - started < 9  # gave up long before the answer (10 s), not a speed figure
    assert info.value.kind == "read_timeout" and "délai de réponse de 0.2 s" in info.value.message
    assert len(server.requests) == 1  # not retried


def test_connection_refused_on_a_real_socket() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    fake = FakeTime()
    config = make_config(f"http://127.0.0.1:{port}/lps")
    with (
        InsiClient(config, clock=fake.clock, sleep=fake.sleep) as client,
        pytest.raises(InsiUnavailable) as info,
    ):
        client.search_traits(QUERY)
    assert info.value.kind == "connect" and fake.sleeps == [1.0, 2.0]
    assert "Connexion au service INSi impossible" in info.value.message


# --- mutual TLS with a throwaway CA ----------------------------------------------------------


@dataclass
class Pki:
    dir: Path
    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    expired_cert: Path
    expired_key: Path
    stranger_cert: Path
    stranger_key: Path
    p12: Path
    p12_password: str


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test")]
    )


def _ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    cn: str,
    *,
    server: bool,
    expired: bool = False,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    start, end = (
        (now - datetime.timedelta(days=30), now - datetime.timedelta(days=1))
        if expired
        else (
            now - datetime.timedelta(days=1),
            now + datetime.timedelta(days=30),
        )
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if server:
        import ipaddress

        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return key, builder.sign(ca_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None = None) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.with_suffix(".key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca_key, ca_cert = _ca("Test IGC-Santé CA")
    other_key, other_cert = _ca("Autre CA")
    s_key, s_cert = _leaf(ca_key, ca_cert, "localhost", server=True)
    c_key, c_cert = _leaf(ca_key, ca_cert, "INSI-AUTO", server=False)
    e_key, e_cert = _leaf(ca_key, ca_cert, "INSI-AUTO", server=False, expired=True)
    x_key, x_cert = _leaf(other_key, other_cert, "INSI-AUTO", server=False)
    p12 = d / "etab.p12"
    password = "mot-de-passe-p12"
    p12.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"etab", c_key, c_cert, [ca_cert], serialization.BestAvailableEncryption(password.encode())
        )
    )
    return Pki(
        dir=d,
        ca=_write(d / "ca.pem", ca_cert),
        other_ca=_write(d / "other-ca.pem", other_cert),
        server_cert=_write(d / "server.pem", s_cert, s_key),
        server_key=d / "server.key",
        client_cert=_write(d / "client.pem", c_cert, c_key),
        client_key=d / "client.key",
        expired_cert=_write(d / "expired.pem", e_cert, e_key),
        expired_key=d / "expired.key",
        stranger_cert=_write(d / "stranger.pem", x_cert, x_key),
        stranger_key=d / "stranger.key",
        p12=p12,
        p12_password=password,
    )


def server_context(pki: Pki) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(pki.server_cert), str(pki.server_key))
    context.load_verify_locations(str(pki.ca))
    context.verify_mode = ssl.CERT_REQUIRED
    return context


@pytest.fixture
def tls_server(pki: Pki, serve: Callable[..., LocalServer]) -> LocalServer:
    return serve(sample(CR00), context=server_context(pki))


def tls_config(server: LocalServer, pki: Pki, **kwargs: object) -> InsiConfig:
    fields: dict[str, object] = {
        "verify": pki.ca,
        "cert_file": pki.client_cert,
        "key_file": pki.client_key,
        **kwargs,
    }
    return make_config(f"https://127.0.0.1:{server.port}/lps", read_timeout=5.0, **fields)


def raw_tls_client(pki: Pki, cert: Path | None, key: Path | None) -> httpx.Client:
    """An httpx client that skips our own certificate checks (to see what the server says)."""
    context = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key))
    return httpx.Client(verify=context, timeout=5.0)


def test_mutual_tls_round_trip_with_pem(pki: Pki, tls_server: LocalServer) -> None:
    with InsiClient(tls_config(tls_server, pki)) as client:
        exchange = client.search_traits(QUERY)
    assert exchange.cr == "00" and len(tls_server.requests) == 1


def test_mutual_tls_round_trip_with_pkcs12_and_its_password(pki: Pki, tls_server: LocalServer) -> None:
    config = tls_config(
        tls_server, pki, cert_file=None, key_file=None, pkcs12_file=pki.p12, pkcs12_password=pki.p12_password
    )
    before = set(Path(__import__("tempfile").gettempdir()).glob("insdesk-insi-*"))
    with InsiClient(config) as client:
        assert client.search_traits(QUERY).cr == "00"
    assert set(Path(__import__("tempfile").gettempdir()).glob("insdesk-insi-*")) == before  # temp key removed
    assert pki.p12_password not in repr(config)


def test_pkcs12_with_a_wrong_password(pki: Pki) -> None:
    config = make_config(
        "https://127.0.0.1:1/lps", verify=pki.ca, pkcs12_file=pki.p12, pkcs12_password="faux-mdp-xyz"
    )
    with pytest.raises(InsiTlsError) as info:
        build_ssl_context(config)
    assert info.value.code == "insi_tls_pkcs12" and "mot de passe incorrect" in info.value.message
    assert "faux-mdp-xyz" not in info.value.message + (info.value.detail or "")
    assert not info.value.retryable and info.value.exit_code == 3


def test_untrusted_server_certificate(pki: Pki, tls_server: LocalServer) -> None:
    with (
        InsiClient(tls_config(tls_server, pki, verify=pki.other_ca)) as client,
        pytest.raises(InsiTlsError) as info,
    ):
        client.search_traits(QUERY)
    assert info.value.code == "insi_tls_server_untrusted"
    assert "Certificat du serveur INSi non reconnu" in info.value.message and not info.value.retryable
    assert tls_server.requests == []


def test_server_certificate_for_another_name(pki: Pki, serve: Callable[..., LocalServer]) -> None:
    # 127.0.0.2 is loopback (Linux) but not in the server certificate (localhost, 127.0.0.1).
    server = serve(sample(CR00), context=server_context(pki), host="127.0.0.2")
    config = make_config(
        f"https://127.0.0.2:{server.port}/lps",
        verify=pki.ca,
        cert_file=pki.client_cert,
        key_file=pki.client_key,
    )
    with InsiClient(config) as client, pytest.raises(InsiTlsError) as info:
        client.search_traits(QUERY)
    assert info.value.code == "insi_tls_server_untrusted"
    assert "ne correspond pas à l'adresse" in info.value.message
    assert server.requests == []


def test_missing_client_certificate_in_the_configuration(pki: Pki, tls_server: LocalServer) -> None:
    with pytest.raises(InsiTlsError) as info:
        InsiClient(tls_config(tls_server, pki, cert_file=None, key_file=None))
    assert info.value.code == "insi_tls_client_missing" and "Aucun certificat" in info.value.message
    with pytest.raises(InsiTlsError) as info:
        InsiClient(tls_config(tls_server, pki, cert_file=pki.dir / "absent.pem", key_file=None))
    assert info.value.code == "insi_tls_missing" and "introuvable" in info.value.message
    assert tls_server.requests == []


def test_expired_client_certificate_is_refused_before_any_call(pki: Pki, tls_server: LocalServer) -> None:
    with pytest.raises(InsiTlsError) as info:
        InsiClient(tls_config(tls_server, pki, cert_file=pki.expired_cert, key_file=pki.expired_key))
    assert info.value.code == "insi_tls_client_expired"
    assert "a expiré le" in info.value.message and "INSI-AUTO" in info.value.message
    assert tls_server.requests == []


@pytest.mark.parametrize("who", ["none", "expired", "stranger"])
def test_client_certificate_refused_by_the_server(pki: Pki, tls_server: LocalServer, who: str) -> None:
    cert, key = {
        "none": (None, None),
        "expired": (pki.expired_cert, pki.expired_key),
        "stranger": (pki.stranger_cert, pki.stranger_key),
    }[who]
    fake = FakeTime()
    client = InsiClient(
        tls_config(tls_server, pki), http=raw_tls_client(pki, cert, key), clock=fake.clock, sleep=fake.sleep
    )
    with client, pytest.raises(InsiTlsError) as info:
        client.search_traits(QUERY)
    err = info.value
    assert err.code == "insi_tls_client_refused", err.detail
    assert err.message.startswith("Certificat de l'établissement refusé par le serveur INSi")
    assert not err.retryable and fake.sleeps == []
    assert tls_server.requests == []


def test_key_not_matching_the_certificate(pki: Pki, tls_server: LocalServer) -> None:
    with pytest.raises(InsiTlsError) as info:
        InsiClient(tls_config(tls_server, pki, key_file=pki.expired_key))
    assert info.value.code == "insi_tls_key"


@pytest.mark.parametrize("proxy", ["socks5://127.0.0.1:1080", "ftp://proxy.example", "http://[::1"])
def test_a_proxy_other_than_http_is_a_configuration_error(proxy: str) -> None:
    """The client's own transport (httpcore's public API, with the exchange deadline) goes through
    an HTTP(S) proxy only: anything else is refused when the client is built, in French."""
    with pytest.raises(BadRequest) as info:
        InsiClient(make_config(proxy=proxy))
    assert info.value.exit_code == 2 and "proxy" in info.value.message


def test_the_client_goes_through_the_configured_http_proxy(serve: Callable[..., LocalServer]) -> None:
    """The transport built for the deadline still honours ``proxy``: the request goes to the proxy
    in absolute form (a loopback server standing for it answers), never to the endpoint itself."""
    proxy = serve(sample(CR00))
    config = make_config("http://127.0.0.1:9/lps", proxy=f"http://127.0.0.1:{proxy.port}")
    with InsiClient(config) as client:
        exchange = client.search_traits(QUERY)
    assert exchange.cr == "00"
    assert proxy.paths == ["http://127.0.0.1:9/lps"]
    assert proxy.requests[0].decode() == exchange.request_xml
