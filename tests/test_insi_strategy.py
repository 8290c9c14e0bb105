"""The certified INSi search strategy (CNDA test 2.07, docs/cli.md ``insi search``): services.insi.strategy.

A scripted INSi behind httpx.MockTransport reads each request (so the envelope and the client
are exercised too) and answers by the first names and birthplace it was sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from lxml import etree

from services.errors import InvalidData
from services.identity.birthdate import BirthDate
from services.identity.traits import StrictTraits
from services.insi.client import InsiClient
from services.insi.config import InsiConfig, RetryPolicy
from services.insi.envelope import NS_RECSANS
from services.insi.errors import InsiFault
from services.insi.strategy import (
    ADVICE_NONE,
    ADVICE_SEVERAL,
    SearchOutcome,
    certified_search,
    certified_search_for_traits,
    first_name_attempts,
)

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "fixtures" / "insi_samples"
SOAP = "http://www.w3.org/2003/05/soap-envelope"
RES = "http://www.cnamts.fr/INSiResultat"


def make_config() -> InsiConfig:
    return InsiConfig(
        endpoint="http://127.0.0.1:9/lps",
        idam="IDAM-TEST-42",
        software_name="insdesk",
        software_version="0.1.0",
        instance_id="b3549edd-4ae9-472a-b26f-fd2fb4ef397f",
        emitter="accueil@labo.example",
        retry=RetryPolicy(max_attempts=2, backoff_base=0.5),
    )


def cr(code: str, label: str) -> bytes:
    return (
        f'<S:Envelope xmlns:S="{SOAP}"><S:Body><ns2:RESULTAT xmlns:ns2="{RES}">'
        f"<ns2:CR><ns2:CodeCR>{code}</ns2:CodeCR>"
        f"<ns2:LibelleCR>{label}</ns2:LibelleCR></ns2:CR></ns2:RESULTAT></S:Body></S:Envelope>"
    ).encode()


FOUND = (SAMPLES / "response_CR00_ADRTROIS_TOUSSAINT.xml").read_bytes()
SEVERAL = (SAMPLES / "response_CR02_multiple_DE_VINCI_LEONARDO.xml").read_bytes()
NONE = cr("01", "Aucune identite trouvee")
FAULT_1020 = (
    f'<soap:Envelope xmlns:soap="{SOAP}"><soap:Body><soap:Fault>'
    "<soap:Code><soap:Value>soap:Receiver</soap:Value>"
    "<soap:Subcode><soap:Value>soap:siram_40</soap:Value></soap:Subcode></soap:Code><soap:Reason>"
    '<soap:Text xml:lang="fr">Service indisponible</soap:Text></soap:Reason><soap:Detail>'
    '<siram:Erreur xmlns:siram="urn:siram" code="desir_1020" severite="erreur">Indisponible</siram:Erreur>'
    "</soap:Detail></soap:Fault></soap:Body></soap:Envelope>"
).encode()


@dataclass
class ScriptedInsi:
    """Answers by the ``Prenom`` sent (``*`` = any); records what each request carried."""

    answers: dict[str, bytes]
    sent: list[dict[str, str | None]] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = etree.fromstring(request.content).find(f".//{{{NS_RECSANS}}}RECSANSVITALE")
        assert body is not None
        fields = {etree.QName(c).localname: c.text for c in body}
        self.sent.append(fields)
        answer = self.answers.get(fields["Prenom"] or "", self.answers.get("*", NONE))
        status = 500 if b"Fault" in answer else 200
        return httpx.Response(status, content=answer, headers={"content-type": "application/soap+xml"})


def client_for(handler: Callable[[httpx.Request], httpx.Response]) -> InsiClient:
    return InsiClient(
        make_config(), http=httpx.Client(transport=httpx.MockTransport(handler)), sleep=lambda s: None
    )


def search(insi: ScriptedInsi, **traits: str) -> SearchOutcome:
    fields = {"birth_name": "ADRTROIS", "first_names": "TOUSSAINT", "sex": "M", "birth_date": "1960-01-01"}
    fields.update(traits)
    return certified_search(client_for(insi), **fields)  # type: ignore[arg-type]


def test_attempt_order() -> None:
    assert first_name_attempts(("TOUSSAINT",)) == ["TOUSSAINT"]
    assert first_name_attempts(("PIERRE", "PAUL", "JACQUES")) == [
        "PIERRE",
        "PAUL",
        "JACQUES",
        "PIERRE PAUL JACQUES",
    ]
    assert first_name_attempts(("JEAN-PIERRE", "MARIE")) == ["JEAN-PIERRE", "MARIE", "JEAN-PIERRE MARIE"]
    assert first_name_attempts(("MARIE", "MARIE")) == ["MARIE", "MARIE MARIE"]


def test_one_first_name_one_attempt_found() -> None:
    insi = ScriptedInsi({"TOUSSAINT": FOUND})
    outcome = search(insi)
    assert outcome.cr == "00" and outcome.found and outcome.advice is None
    assert [a.first_names for a in outcome.attempts] == ["TOUSSAINT"]
    assert len(insi.sent) == 1 and "LieuNaissance" not in insi.sent[0]
    assert outcome.identity is not None and outcome.identity.matricule.value == "160012B02077713"


def test_several_first_names_each_alone_then_together_and_stop_at_00() -> None:
    insi = ScriptedInsi({"PAUL": FOUND})
    outcome = search(insi, first_names="PIERRE PAUL JACQUES")
    assert [s["Prenom"] for s in insi.sent] == ["PIERRE", "PAUL"]  # stopped at the first 00
    assert [(a.first_names, a.cr) for a in outcome.attempts] == [("PIERRE", "01"), ("PAUL", "00")]
    assert outcome.cr == "00" and outcome.label == "OK"


def test_all_together_is_the_last_attempt() -> None:
    insi = ScriptedInsi({"PIERRE PAUL JACQUES": FOUND})
    outcome = search(insi, first_names="PIERRE PAUL JACQUES")
    assert [s["Prenom"] for s in insi.sent] == ["PIERRE", "PAUL", "JACQUES", "PIERRE PAUL JACQUES"]
    assert outcome.cr == "00" and len(outcome.attempts) == 4


def test_none_found_gives_01_with_advice() -> None:
    insi = ScriptedInsi({})
    outcome = search(insi, birth_name="HOUILLES", first_names="PIERRE PAUL JACQUES", birth_date="1993-01-27")
    assert outcome.cr == "01" and outcome.identity is None
    assert len(insi.sent) == 4 and outcome.label == "Aucune identite trouvee"
    assert outcome.advice == ADVICE_NONE and "vérifiez les traits saisis et réessayez" in outcome.advice


def test_02_wins_over_01_with_advice() -> None:
    insi = ScriptedInsi({"LEONARDO": SEVERAL})
    outcome = search(
        insi, birth_name="DE VINCI", first_names="LEONARDO DI SER PIERO", birth_date="2014-02-01"
    )
    assert [a.cr for a in outcome.attempts] == ["02", "01", "01", "01", "01"]
    assert outcome.cr == "02" and outcome.label == "Plusieurs identites trouvees" and outcome.identity is None
    assert outcome.advice == ADVICE_SEVERAL
    assert "ajoutez le lieu de naissance ou les autres prénoms" in outcome.advice


def test_02_then_00_is_00() -> None:
    insi = ScriptedInsi({"PIERRE": SEVERAL, "PIERRE PAUL": FOUND})
    outcome = search(insi, first_names="PIERRE PAUL")
    assert [a.cr for a in outcome.attempts] == ["02", "01", "00"] and outcome.cr == "00"


def test_birthplace_is_sent_on_every_attempt() -> None:
    insi = ScriptedInsi({})
    search(insi, first_names="PIERRE PAUL JACQUES", birthplace="2B020")
    assert len(insi.sent) == 4
    assert all(s["LieuNaissance"] == "2B020" for s in insi.sent)
    assert all(
        (s["NomNaissance"], s["Sexe"], s["DateNaissance"]) == ("ADRTROIS", "M", "1960-01-01")
        for s in insi.sent
    )


def test_traits_are_normalised_before_sending() -> None:
    insi = ScriptedInsi({"*": FOUND})
    outcome = search(insi, birth_name="adrtrois", first_names="toussaint", sex="m", birth_date="1960-01")
    assert insi.sent[0]["NomNaissance"] == "ADRTROIS" and insi.sent[0]["Prenom"] == "TOUSSAINT"
    assert insi.sent[0]["DateNaissance"] == "1960-01-01"  # unknown day -> 01 (EXI ID 11/12)
    assert outcome.warnings and outcome.traits.birth_date.uncertain


@pytest.mark.parametrize(
    "traits",
    [
        {"birth_name": "D’ÆION", "first_names": "CŒUR"},  # CNDA: refused before any call
        {"first_names": "JOSÉ"},
        {"sex": "X"},
        {"birth_date": "1960-13-01"},
        {"birthplace": "ZZZZZ"},
        {"birth_name": ""},
    ],
)
def test_invalid_traits_make_no_call_at_all(traits: dict[str, str]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        pytest.fail("INSi must not be called with invalid traits")

    fields = {
        "birth_name": "ADRTROIS",
        "first_names": "TOUSSAINT",
        "sex": "M",
        "birth_date": "1960-01-01",
        **traits,
    }
    with pytest.raises(InvalidData) as info:
        certified_search(client_for(handler), **fields)  # type: ignore[arg-type]
    assert info.value.errors and info.value.exit_code == 1


def test_fault_propagates_with_the_exchanges_made_so_far() -> None:
    insi = ScriptedInsi({"PIERRE": NONE, "PAUL": FAULT_1020})
    with pytest.raises(InsiFault) as info:
        search(insi, first_names="PIERRE PAUL")
    err = info.value
    assert err.code == "siram_40/desir_1020" and err.retryable
    assert [s["Prenom"] for s in insi.sent] == ["PIERRE", "PAUL", "PAUL"]  # 1020 retried once (max 2)
    assert [e.cr for e in err.exchanges] == ["01", None]
    assert err.exchanges[1].error_code == "siram_40/desir_1020" and err.exchanges[1].attempts == 2


def test_search_for_stored_traits_validates_again() -> None:
    insi = ScriptedInsi({"TOUSSAINT": FOUND})
    traits = StrictTraits(
        "ADRTROIS", ("TOUSSAINT",), "TOUSSAINT", "M", BirthDate.parse("1960-01-01"), "2B020"
    )
    outcome = certified_search_for_traits(client_for(insi), traits)
    assert outcome.cr == "00" and insi.sent[0]["LieuNaissance"] == "2B020"

    def handler(request: httpx.Request) -> httpx.Response:
        pytest.fail("no call expected")

    bad = StrictTraits("ÉLODIE", ("ANNE",), "ANNE", "F", BirthDate.parse("1960-01-01"))
    with pytest.raises(InvalidData):
        certified_search_for_traits(client_for(handler), bad)


def test_cli_dict_found() -> None:
    insi = ScriptedInsi({"TOUSSAINT": FOUND})
    data = search(insi, first_names="JEAN TOUSSAINT").as_cli_dict()
    assert json.loads(json.dumps(data)) == data
    assert list(data) == ["cr", "label", "ins", "traits", "history", "attempts"]
    assert data["cr"] == "00" and data["label"] == "OK"
    assert data["ins"] == {"matricule": "160012B020777", "key": "13", "oid": "1.2.250.1.213.1.4.8"}
    assert data["traits"] == {
        "birth_name": "ADRTROIS",
        "first_names": ["TOUSSAINT"],
        "first_name": "TOUSSAINT",
        "sex": "M",
        "birth_date": "1960-01-01",
        "birthplace": "2B020",
        "birth_date_uncertain": False,
    }
    assert data["history"] == []
    assert data["attempts"] == [{"first_names": "JEAN", "cr": "01"}, {"first_names": "TOUSSAINT", "cr": "00"}]


def test_cli_dict_not_found() -> None:
    data = search(ScriptedInsi({"*": SEVERAL})).as_cli_dict()
    assert data == {
        "cr": "02",
        "label": "Plusieurs identites trouvees",
        "ins": None,
        "traits": None,
        "history": [],
        "attempts": [{"first_names": "TOUSSAINT", "cr": "02"}],
    }


def test_outcome_keeps_every_exchange() -> None:
    insi = ScriptedInsi({"PAUL": FOUND})
    outcome = search(insi, first_names="PIERRE PAUL")
    assert len(outcome.exchanges) == 2
    assert all(e.request_xml and e.response_xml for e in outcome.exchanges)
    assert "<insi_recsans_ins:Prenom>PIERRE</insi_recsans_ins:Prenom>" in outcome.exchanges[0].request_xml
