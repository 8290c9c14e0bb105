"""Carte Vitale reading.

The PC/SC tests run the WHOLE stack: pyscard → libpcsclite → pcscd (ours, started by the
``pcsc_rig`` session fixture) → vpcd → our virtual card (tests/vcard/virtual_vitale.py, which
shares no code with the reader). The rest checks the pure parts and the simulated reader.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from stdnum.fr import nir as stdnum_nir

import tui.cli
from services.errors import ExternalFailure
from services.vitale import tlv
from services.vitale.model import (
    CardError,
    CardEvent,
    CardMute,
    CardPerson,
    CardRead,
    CardRemoved,
    CardStatusError,
    MalformedCardData,
    NoCard,
    NoReader,
    PcscServiceAbsent,
    ReaderUnavailable,
    UnsupportedCard,
    birth_date_text,
)
from services.vitale.parse import classify_atr, parse_persons
from services.vitale.pcsc import ApduSession, PcscReader, pcsc_error
from services.vitale.sesam import SesamVitaleReader
from services.vitale.simulated import SimulatedReader, default_demo_data, load_card_file
from tests.rig.pcsc import READERS, PcscRig, VirtualCard, card_present, wait_card_state
from tests.rig.postgres import RigError
from tui.cli.commands import vitale as vitale_cmd

ROOT = Path(__file__).resolve().parents[1]
CARDS = ROOT / "fixtures" / "vitale"
PASSWORDS = {"admin": "admin-secret-1", "accueil1": "accueil-secret-1", "bio1": "biolog-secret-1"}

Plug = Callable[..., VirtualCard]


def card_json(name: str) -> dict[str, Any]:
    return json.loads((CARDS / name).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def expected_persons(name: str) -> list[dict[str, Any]]:
    """What ``vitale read --json`` must print for a data file, computed independently."""
    out = []
    for row in card_json(name)["persons"]:
        raw = row["birth_date"]
        out.append(
            {
                "name": row["name"],
                "first_name": row["first_name"],
                "birth_date": f"{raw[:4]}-{raw[4:6]}-{raw[6:]}",
                "nir": row["nir"],
            }
        )
    return out


# --- the command line ----------------------------------------------------------------------


def _register_vitale(original: Callable[..., None]) -> Callable[..., None]:
    def register_all(sub: Any, argv: Any = None) -> None:
        original(sub, argv)
        if "vitale" not in sub.choices:  # until the lead registers the module
            vitale_cmd.register(sub)

    return register_all


@pytest.fixture(autouse=True)
def _vitale_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tui.cli, "register_all", _register_vitale(tui.cli.register_all))


@pytest.fixture(scope="module")
def db_with_users(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = f"sqlite:///{tmp_path_factory.mktemp('vitale') / 'insdesk.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tui.cli, "register_all", _register_vitale(tui.cli.register_all))
        for login, role, actor in (
            ("admin", "admin", None),
            ("accueil1", "reception", "admin"),
            ("bio1", "biologist", "admin"),
        ):
            mp.setattr(sys, "stdin", io.StringIO(PASSWORDS[login] + "\n"))
            if actor:
                mp.setenv("INSDESK_PASSWORD", PASSWORDS[actor])
            argv = [
                "--db",
                url,
                *(["--as", actor] if actor else []),
                "users",
                "add",
                login,
                "--role",
                role,
                "--json",
            ]
            with contextlib.redirect_stdout(io.StringIO()):
                assert tui.cli.main(argv) == 0
    yield url


class CliRun:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code = code
        self.out = out
        self.err = err
        lines = [line for line in out.splitlines() if line.strip()]
        assert len(lines) == 1, f"--json must print exactly one JSON object, got {out!r} (stderr {err!r})"
        self.json: dict[str, Any] = json.loads(lines[0])


@pytest.fixture
def vitale_cli(
    db_with_users: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., CliRun]:
    def run(*args: str, user: str | None = "accueil1") -> CliRun:
        argv = ["--db", db_with_users]
        if user:
            argv += ["--as", user]
            monkeypatch.setenv("INSDESK_PASSWORD", PASSWORDS[user])
        monkeypatch.delenv("INSDESK_USER", raising=False)
        capsys.readouterr()
        code = tui.cli.main([*argv, "vitale", "read", *args, "--json"])
        out, err = capsys.readouterr()
        return CliRun(code, out, err)

    return run


def assert_error(run: CliRun, code: str, *words: str) -> None:
    assert run.code == 3, (run.json, run.err)
    assert run.json["error"]["code"] == code, run.json
    for word in words:
        assert word.casefold() in run.json["error"]["message"].casefold(), run.json
        assert word.casefold() in run.err.casefold()


# --- whole stack: successful reads ---------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "mode"),
    [
        ("famille_martin.json", "normal"),  # holder + 2 children, nationality tag 90
        ("corse.json", "normal"),  # 2A / 2B NIRs
        ("seul.json", "getresponse"),  # T=0 card: 61xx then GET RESPONSE
        ("famille_nombreuse.json", "normal"),  # files over 256 bytes: read in several chunks
        ("famille_nombreuse.json", "getresponse"),
    ],
)
def test_vitale_read_json_prints_the_cards_persons(
    plug_card: Plug, vitale_cli: Callable[..., CliRun], data: str, mode: str
) -> None:
    plug_card(data, mode=mode)
    run = vitale_cli()
    assert run.code == 0, run.json
    assert run.json == {
        "reader": "Virtual PCD 00 00",
        "atr": "3B751300004709EA9000",
        "card": "vitale2",
        "persons": expected_persons(data),
    }
    for person in run.json["persons"]:
        assert stdnum_nir.is_valid(person["nir"])


def test_vitale_read_for_people(
    plug_card: Plug, db_with_users: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plug_card("famille_martin.json")
    monkeypatch.setenv("INSDESK_PASSWORD", PASSWORDS["accueil1"])
    capsys.readouterr()
    assert tui.cli.main(["--db", db_with_users, "--as", "accueil1", "vitale", "read"]) == 0
    out = capsys.readouterr().out
    assert "Carte Vitale lue" in out and "HUGO" in out and "pièce d'identité" in out


def test_card_reading_needs_a_user_with_the_right(plug_card: Plug, vitale_cli: Callable[..., CliRun]) -> None:
    plug_card("seul.json")
    assert vitale_cli(user=None).code == 4
    run = vitale_cli(user="bio1")  # biologists do not read cards
    assert run.code == 4 and run.json["error"]["code"] == "permission_denied"


def test_reader_chosen_by_name_and_first_reader_with_a_card(
    plug_card: Plug, vitale_cli: Callable[..., CliRun]
) -> None:
    plug_card("seul.json", slot=1)
    run = vitale_cli()  # only 00 01 holds a card: found without a name
    assert run.code == 0 and run.json["reader"] == READERS[1]
    assert [p["first_name"] for p in run.json["persons"]] == ["JEAN-PIERRE"]
    assert_error(vitale_cli("--reader", "00 00"), "no_card", "aucune carte", "Virtual PCD 00 00")

    plug_card("famille_martin.json", slot=0)
    run = vitale_cli()  # two cards and no name: the first reader, documented
    assert run.code == 0 and run.json["reader"] == READERS[0]
    assert len(run.json["persons"]) == 3
    run = vitale_cli("--reader", "pcd 00 01")  # case-insensitive substring
    assert run.code == 0 and run.json["reader"] == READERS[1]


# --- whole stack: errors --------------------------------------------------------------------


def test_no_card(pcsc_rig: PcscRig, vitale_cli: Callable[..., CliRun]) -> None:
    assert not card_present(READERS[0]) and not card_present(READERS[1])
    assert_error(vitale_cli(), "no_card", "aucune carte", "insérez la carte Vitale")


def test_unknown_reader_name(pcsc_rig: PcscRig, vitale_cli: Callable[..., CliRun]) -> None:
    run = vitale_cli("--reader", "Omnikey 3121")
    assert_error(run, "unknown_reader", "aucun lecteur", "Omnikey 3121", "Virtual PCD 00 00")


def test_card_removed_during_the_read(plug_card: Plug, vitale_cli: Callable[..., CliRun]) -> None:
    plug_card("famille_martin.json", mode="remove-after=3")  # pulled out at the 2nd SELECT
    assert_error(vitale_cli(), "card_removed", "carte retirée pendant la lecture")


def test_mute_card(plug_card: Plug, vitale_cli: Callable[..., CliRun]) -> None:
    plug_card("famille_martin.json", mode="mute")
    start = time.monotonic()
    assert_error(vitale_cli("--timeout", "1"), "card_mute", "ne répond plus")
    assert time.monotonic() - start < 5


def test_vitale1_is_not_supported(plug_card: Plug, vitale_cli: Callable[..., CliRun]) -> None:
    plug_card("famille_martin.json", mode="vitale1")
    assert_error(vitale_cli(), "vitale1_unsupported", "carte Vitale 1 non prise en charge")


def test_unknown_card(plug_card: Plug, vitale_cli: Callable[..., CliRun]) -> None:
    plug_card(
        "famille_martin.json", mode="atr=3B8F8001804F0CA000000306030001000000006A"
    )  # a contactless badge
    assert_error(vitale_cli(), "unsupported_card", "ce n'est pas une carte Vitale 2")


def test_malformed_tlv(plug_card: Plug, vitale_cli: Callable[..., CliRun]) -> None:
    plug_card("famille_martin.json", mode="malformed")
    assert_error(vitale_cli(), "malformed_card", "données mal formées")


def test_wrong_status_word(plug_card: Plug, vitale_cli: Callable[..., CliRun]) -> None:
    plug_card("famille_martin.json", mode="sw=6A82")
    run = vitale_cli()
    assert_error(run, "card_status", "application Vitale introuvable", "6A82")


def test_wrong_status_word_in_python(plug_card: Plug) -> None:
    plug_card("famille_martin.json", mode="sw=6982")
    with pytest.raises(CardStatusError) as err:
        PcscReader().read()
    assert err.value.sw == "6982" and "données protégées" in err.value.message


# --- whole stack: events, waiting, re-insertion ---------------------------------------------


def test_monitor_sees_insertion_and_removal(pcsc_rig: PcscRig) -> None:
    inserted: list[CardEvent] = []
    removed: list[CardEvent] = []
    seen_in, seen_out = threading.Event(), threading.Event()

    def on_insert(event: CardEvent) -> None:
        inserted.append(event)
        seen_in.set()

    def on_remove(event: CardEvent) -> None:
        removed.append(event)
        seen_out.set()

    with PcscReader().monitor(on_insert, on_remove):
        time.sleep(0.2)
        start = time.monotonic()
        card = pcsc_rig.plug("seul.json", wait_present=False)
        assert seen_in.wait(5), "insertion not reported within 5 s"
        took_in = time.monotonic() - start
        start = time.monotonic()
        card.stop(wait_removed=False)
        assert seen_out.wait(5), "removal not reported within 5 s"
        took_out = time.monotonic() - start
    assert inserted[-1] == CardEvent(READERS[0], "3B751300004709EA9000")
    assert removed[-1].reader == READERS[0]
    assert took_in < 3 and took_out < 3


def test_wait_for_card_and_reinsertion(pcsc_rig: PcscRig, plug_card: Plug) -> None:
    reader = PcscReader()
    with pytest.raises(NoCard, match=r"Aucune carte insérée en 0\.5 s"):
        reader.wait_for_card(0.5)
    # re-inserted 1 s after being pulled out: pcscd polls the reader every 0.4 s, so it sees both
    card = plug_card("corse.json", mode="remove-after=1,reinsert-after=1", wait_present=False)
    event = reader.wait_for_card(5)
    assert event.reader == READERS[0]
    with pytest.raises(CardRemoved):
        reader.read()
    card.next_event("removed")
    card.next_event("inserted")  # re-inserted: now the read goes through (remove-after counts per insertion)…
    wait_card_state(READERS[0], present=True)
    with pytest.raises(CardRemoved):  # …and the card is pulled again at the 2nd APDU
        reader.read()

    steady = plug_card("corse.json", slot=1, removed=True)
    steady.toggle()  # SIGUSR1: inserted
    steady.next_event("inserted")
    assert reader.wait_for_card(5).reader == READERS[1]
    assert [p.name for p in reader.read("00 01").persons] == ["ADRTROIS", "PAOLI"]
    steady.toggle()  # pulled out
    steady.next_event("removed")
    wait_card_state(READERS[1], present=False)
    steady.toggle()  # and in again
    steady.next_event("inserted")
    wait_card_state(READERS[1], present=True)
    read = reader.read("00 01")
    assert read.persons[1].nir == "278082A00402114"


def test_pcscd_stopped_then_a_pcscd_without_readers(
    pcsc_rig: PcscRig, vitale_cli: Callable[..., CliRun]
) -> None:
    """The real thing: no pcscd at all, then a pcscd that has no reader. (Fresh PC/SC contexts
    for every read: nothing cached in this process; the next test's setup restarts the rig.)"""
    pcsc_rig.stop()
    assert_error(vitale_cli(), "pcsc_absent", "service PC/SC absent : lancez pcscd")
    bare = PcscRig(with_readers=False).start(wait_other=10)
    try:
        assert PcscReader().list_readers() == []
        assert_error(vitale_cli(), "no_reader", "aucun lecteur de carte détecté")
        assert_error(vitale_cli("--reader", "00 00"), "no_reader", "aucun lecteur de carte détecté")
    finally:
        bare.stop()


def test_rig_refuses_a_second_pcscd(pcsc_rig: PcscRig) -> None:
    assert pcsc_rig.running and pcsc_rig.proc is not None
    other = PcscRig()
    with pytest.raises(RigError, match=f"another pcscd is running \\(PID {pcsc_rig.proc.pid}\\)"):
        other.start(wait_other=0)
    other.stop()
    cmdline = Path(f"/proc/{pcsc_rig.proc.pid}/cmdline").read_bytes().split(b"\0")
    assert b"--foreground" in cmdline and b"--apdu" in cmdline and b"--auto-exit" not in cmdline


# --- without pcscd ----------------------------------------------------------------------


def test_simulated_reader_from_the_command_line(vitale_cli: Callable[..., CliRun]) -> None:
    run = vitale_cli("--reader", "sim")
    assert run.code == 0
    assert run.json["reader"] == "Lecteur simulé insdesk" and run.json["card"] == "vitale2"
    assert run.json["persons"] == expected_persons("demo.json")


PCSCD_ABSENT = r"""
import sys
import tui.cli
from tui.cli.commands import vitale
original = tui.cli.register_all
def register_all(sub, argv=None):
    original(sub, argv)
    if "vitale" not in sub.choices:
        vitale.register(sub)
tui.cli.register_all = register_all
sys.exit(tui.cli.main(sys.argv[1:]))
"""


def test_pcsc_service_absent(db_with_users: str, tmp_path: Path) -> None:
    """A process whose libpcsclite finds no pcscd socket: exactly the "pcscd not running" case."""
    env = {
        **os.environ,
        "PCSCLITE_CSOCK_NAME": str(tmp_path / "no-pcscd" / "pcscd.comm"),
        "INSDESK_PASSWORD": PASSWORDS["accueil1"],
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            PCSCD_ABSENT,
            "--db",
            db_with_users,
            "--as",
            "accueil1",
            "vitale",
            "read",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 3, proc.stderr
    error = json.loads(proc.stdout)["error"]
    assert error["code"] == "pcsc_absent"
    assert "service pc/sc absent : lancez pcscd" in error["message"].casefold()
    assert "Traceback" not in proc.stderr


def test_pcsc_service_absent_in_python(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The same through the backend API, in a child process (libpcsclite reads the variable once)."""
    code = (
        "from services.vitale import PcscReader, PcscServiceAbsent\n"
        "for call in (lambda r: r.list_readers(), lambda r: r.read(), lambda r: r.wait_for_card(1),\n"
        "             lambda r: r.monitor(print, print)):\n"
        "    try:\n"
        "        call(PcscReader())\n"
        "    except PcscServiceAbsent as err:\n"
        "        print(err.code, err.detail)\n"
    )
    env = {**os.environ, "PCSCLITE_CSOCK_NAME": str(tmp_path / "nowhere.comm")}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60
    )
    lines = proc.stdout.splitlines()
    assert len(lines) == 4 and all(line.startswith("pcsc_absent") for line in lines), proc
    assert "0x8010001D" in lines[0]


# --- pure parts -----------------------------------------------------------------------------


def _person(name: bytes, first: bytes, born: bytes) -> bytes:
    return tlv.encode(0x65, tlv.encode(0x80, name) + tlv.encode(0x81, first) + tlv.encode(0x82, born))


def _nir(nir: bytes) -> bytes:
    return tlv.encode(0x65, tlv.encode(0x93, nir))


def test_parse_persons_merges_by_order() -> None:
    persons = parse_persons(
        _person(b"MARTIN", b"CLAIRE", b"19850621") + _person(b"MARTIN", b"LEA", b"20120314") + b"\x00" * 10,
        _nir(b"285067511500155") + _nir(b"2120375115112"),  # a number stored without its key
    )
    assert persons == (
        CardPerson("MARTIN", "CLAIRE", "19850621", "285067511500155"),
        CardPerson("MARTIN", "LEA", "20120314", "212037511511278"),
    )


def test_parse_persons_single_file_layout() -> None:
    """Cardpeek shows all tags of a person in one template: parsed by tag, whatever the file."""
    body = tlv.encode(0x80, b"DUBOIS") + tlv.encode(0x81, b"JEAN-PIERRE") + tlv.encode(0x82, b"19721105")
    body += tlv.encode(0x93, b"172111305500326") + tlv.encode(0x90, b"FRANCAISE")
    (person,) = parse_persons(tlv.encode(0x65, body) + tlv.encode(0x66, tlv.encode(0x80, b"20200101")))
    assert person.nir == "172111305500326" and person.nationality == "FRANCAISE"


@pytest.mark.parametrize(
    ("files", "words"),
    [
        ((_person(b"A", b"B", b"19850621") * 2, _nir(b"285067511500155")), "ne correspond pas"),
        ((b"\x65\x05\x80\x03AB",), "mal formées"),
        ((tlv.encode(0x65, tlv.encode(0x80, b"A") + tlv.encode(0x81, b"B")),), "incomplet"),
        ((_person(b"A", b"B", b"1985-6-1"),), "AAAAMMJJ"),
        ((_person(b"A", b"B", b"19850621"), _nir(b"285067511500156")), "clé"),
        (
            (
                tlv.encode(
                    0x65, tlv.encode(0x80, b"A") * 2 + tlv.encode(0x81, b"B") + tlv.encode(0x82, b"19850621")
                ),
            ),
            "deux fois",
        ),
        ((b"", b""), "Aucune personne"),
        ((_person(b"  ", b"B", b"19850621"),), "Nom vide"),
    ],
)
def test_parse_persons_refuses_bad_content(files: tuple[bytes, ...], words: str) -> None:
    with pytest.raises(MalformedCardData, match=words) as err:
        parse_persons(*files)
    assert err.value.exit_code == 3


def test_birth_dates() -> None:
    assert birth_date_text("19850621") == "1985-06-21"
    assert birth_date_text("19680300") == "1968-03"  # day unknown: the traits check format
    assert birth_date_text("19680000") == "1968"
    assert birth_date_text("19680231") is None and birth_date_text("19681300") is None
    assert CardPerson("X", "Y", "19680000").birth_date is None
    assert CardPerson("X", "Y", "19680000").as_cli_dict()["birth_date"] == "1968"
    assert CardPerson("X", "Y", "19850621", rank=2).as_cli_dict()["rank"] == 2


def test_atr_classification() -> None:
    assert classify_atr(bytes.fromhex("3B751300004509EA9000")) == "vitale2"
    assert classify_atr(bytes.fromhex("3B751300005709EA9000")) == "unknown"
    assert classify_atr(bytes.fromhex("3F6525002B09699000")) == "vitale1"
    assert classify_atr(b"") == "unknown"


class FakeCard:
    """A scripted card: answers from a table, to check the exchange rules one by one."""

    def __init__(self, answers: dict[bytes, list[bytes]]) -> None:
        self.answers = {k: list(v) for k, v in answers.items()}
        self.sent: list[bytes] = []

    def __call__(self, apdu: bytes) -> tuple[bytes, int]:
        self.sent.append(apdu)
        response = self.answers[apdu].pop(0)
        return response[:-2], int.from_bytes(response[-2:], "big")


def test_apdu_rules_6c_61_6282_and_chunks() -> None:
    big = bytes(range(256))
    card = FakeCard(
        {
            bytes.fromhex("00B0820000"): [bytes.fromhex("6C10")],
            bytes.fromhex("00B0820010"): [bytes.fromhex("6108")],
            bytes.fromhex("00C0000008"): [bytes.fromhex("6C04")],
            bytes.fromhex("00C0000004"): [b"ABCD" + bytes.fromhex("6104")],
        }
    )
    card.answers[bytes.fromhex("00C0000004")].append(b"EFGH\x90\x00")
    assert ApduSession(card).read_sfi(2, "x") == b"ABCDEFGH"

    card = FakeCard(
        {
            bytes.fromhex("00B0820000"): [big + b"\x90\x00"],
            bytes.fromhex("00B0010000"): [big + b"\x90\x00"],
            bytes.fromhex("00B0020000"): [b"xyz\x62\x82"],  # end of file reached
        }
    )
    assert ApduSession(card).read_sfi(2, "x") == big + big + b"xyz"

    card = FakeCard(
        {bytes.fromhex("00B0820000"): [big + b"\x90\x00"], bytes.fromhex("00B0010000"): [b"\x6b\x00"]}
    )
    assert ApduSession(card).read_sfi(2, "x") == big

    card = FakeCard({bytes.fromhex("00B0820000"): [b"\x69\x82"]})
    with pytest.raises(CardStatusError, match="6982"):
        ApduSession(card).read_sfi(2, "des identités")


def test_apdu_session_gives_up_on_an_endless_card() -> None:
    session = ApduSession(lambda apdu: (b"", 0x61FF))
    with pytest.raises(MalformedCardData, match="ne termine pas"):
        session.select_mf()


@pytest.mark.parametrize(
    ("code", "error", "words"),
    [
        (0x8010001D, PcscServiceAbsent, "Service PC/SC absent : lancez pcscd"),
        (0x8010002E, NoReader, "Aucun lecteur"),
        (0x80100009, NoReader, "n'est plus disponible"),
        (0x8010000C, NoCard, "Aucune carte"),
        (0x80100069, CardRemoved, "retirée"),
        (0x80100066, CardMute, "ne répond pas"),
        (0x80100065, UnsupportedCard, "non prise en charge"),
        (0x8010000B, CardError, "autre programme"),
        (0x80100016, CardError, "Erreur de communication"),
    ],
)
def test_pcsc_error_mapping(code: int, error: type[CardError], words: str) -> None:
    err = pcsc_error(code, "test", "Lecteur X")
    assert type(err) is error and words in err.message
    assert isinstance(err, ExternalFailure) and err.exit_code == 3


def test_fixture_cards_have_valid_nirs() -> None:
    for path in sorted(CARDS.glob("*.json")):
        for row in json.loads(path.read_text(encoding="utf-8"))["persons"]:
            assert stdnum_nir.is_valid(row["nir"]), (path.name, row["nir"])
            assert len(row["birth_date"]) == 8
    corsica = {row["nir"][5:7] for row in card_json("corse.json")["persons"]}
    assert corsica == {"2A", "2B"}
    assert stdnum_nir.calc_check_digits("180032B020401") == "23"  # the reference value (2B -> 18)


def test_simulated_reader_behaves_like_a_card_being_inserted(tmp_path: Path) -> None:
    sim = SimulatedReader(CARDS / "famille_martin.json", inserted=False, insert_delay=0.05)
    assert sim.list_readers() == ["Lecteur simulé insdesk"]
    with pytest.raises(NoCard):
        sim.read()
    events: list[tuple[str, CardEvent]] = []
    got = threading.Event()

    def on_insert(event: CardEvent) -> None:
        events.append(("in", event))
        got.set()

    with sim.monitor(on_insert, lambda e: events.append(("out", e))):
        time.sleep(0.2)
        assert events == []
        threading.Timer(0.1, sim.insert).start()
        assert sim.wait_for_card(5).reader == "Lecteur simulé insdesk"
        assert got.wait(5)
        read = sim.read("simulé")
        assert [p.first_name for p in read.persons] == ["CLAIRE", "LEA", "HUGO"]
        sim.remove()
    sim.insert()  # after stop(): no more events
    assert [kind for kind, _ in events] == ["in", "out"]
    with pytest.raises(NoReader):
        sim.read("Omnikey")
    with pytest.raises(NoCard):
        SimulatedReader(inserted=False).wait_for_card(0.05)


def test_simulated_reader_fires_insert_for_the_card_already_in() -> None:
    sim = SimulatedReader(insert_delay=0.05)
    got: list[CardEvent] = []
    done = threading.Event()
    handle = sim.monitor(lambda e: (got.append(e), done.set()), lambda e: None)
    assert done.wait(5)
    handle.stop()
    assert got == [CardEvent("Lecteur simulé insdesk", "3B751300004709EA9000")]
    assert default_demo_data().name == "demo.json"


def test_simulated_card_data_with_ranks_and_errors(tmp_path: Path) -> None:
    data = card_json("seul.json")
    data["persons"][0]["rank"] = 1
    path = tmp_path / "card.json"
    path.write_text(json.dumps(data))
    (person,) = load_card_file(path)
    assert person.rank == 1 and person.as_cli_dict()["rank"] == 1
    path.write_text("{not json")
    with pytest.raises(ReaderUnavailable, match="illisible"):
        SimulatedReader(path).read()


def test_card_read_model() -> None:
    holder = CardPerson("MARTIN", "CLAIRE", "19850621", "285067511500155")
    child = CardPerson("MARTIN", "LEA", "20120314", "285067511500155")
    read = CardRead("R", "3B", (holder, child))
    assert read.holder is holder and read.shares_holder_nir(child) and not read.shares_holder_nir(holder)
    assert list(read.as_cli_dict()) == ["reader", "atr", "card", "persons"]
    assert list(read.as_cli_dict()["persons"][0]) == ["name", "first_name", "birth_date", "nir"]


def test_sesam_vitale_hook_explains_itself() -> None:
    reader = SesamVitaleReader(library_path="/opt/sesam/libsesam.so")
    for call in (reader.list_readers, reader.read, lambda: reader.wait_for_card(1)):
        with pytest.raises(ReaderUnavailable) as err:
            call()
        assert err.value.code == "sesam_vitale_unavailable" and err.value.exit_code == 3
        assert "sous licence" in err.value.message and "/opt/sesam/libsesam.so" in err.value.message
