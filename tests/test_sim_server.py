"""The loopback server both simulators run on (``services/sim_server.py``): one life cycle for both."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from services.dmp_sim.server import DmpSimulator
from services.errors import BadRequest
from services.insi_sim.server import InsiSimulator


@pytest.mark.parametrize("make", [InsiSimulator, DmpSimulator])
def test_start_stop_restart_on_a_free_port(make: type[InsiSimulator] | type[DmpSimulator]) -> None:
    sim = make()
    with sim:
        first = sim.port
        assert first > 0 and sim.running
        # A GET is answered (INSi: WSDL/405; DMP: 405) by the shared handler, with its length.
        answer = httpx.get(sim.url, timeout=10)
        assert answer.status_code in (200, 404, 405)
        assert int(answer.headers["content-length"]) == len(answer.content)
    assert not sim.running
    sim.start()  # started again after a stop
    try:
        assert sim.running and sim.port > 0
    finally:
        sim.stop()
    sim.stop()  # twice: nothing happens


@pytest.mark.parametrize(("make", "code"), [(InsiSimulator, "insi_sim_port"), (DmpSimulator, "dmp_sim_port")])
def test_a_port_out_of_range_is_a_french_message(
    make: type[InsiSimulator] | type[DmpSimulator], code: str
) -> None:
    with pytest.raises(BadRequest) as caught:
        make(port=70000).start()
    assert caught.value.code == code and caught.value.message.startswith("Port invalide : 70000")


@pytest.mark.parametrize("command", ["insi-sim", "dmp-sim"])
def test_the_commands_refuse_a_bad_port_without_a_traceback(command: str) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "tui.cli", command, "--port", "99999"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2, run.stderr
    assert "Port invalide : 99999" in run.stderr and "Traceback" not in run.stderr
