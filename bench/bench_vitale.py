"""Time from carte Vitale insertion to persons parsed, on the real PC/SC stack.

Run: ``.venv/bin/python bench/bench_vitale.py [--insertions 20] [--data famille_martin.json]``
(as root, from the repository root; no other pcscd may run).

Starts the test rig (our pcscd + vpcd, tests/rig/pcsc.py) and our virtual carte Vitale, then
inserts and removes the card N times (SIGUSR1 to the card process, after a random pause so
that insertions fall anywhere in pcscd's polling cycle). For each insertion:

- detection: from the card connecting to vpcd (the card prints its CLOCK_MONOTONIC time)
  to pcscd reporting the card present (``SCardGetStatusChange``): pcscd polls the reader,
  this is the part the application cannot shorten;
- read + parse: from there to the persons parsed by ``PcscReader.read`` (fresh PC/SC
  context, connect, transaction, SELECT/READ BINARY ×2, BER-TLV parsing, NIR checks);
- total: insertion to persons parsed.

Prints median, p95 and max of each (milliseconds).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import percentiles
from services.vitale.pcsc import PcscReader
from tests.rig.pcsc import READERS, PcscRig, wait_card_state


def wait_present(reader: str, timeout: float = 10.0) -> float:
    """Blocks in SCardGetStatusChange until pcscd reports a card in ``reader``; returns the time."""
    from smartcard import scard

    hresult, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    assert hresult == scard.SCARD_S_SUCCESS
    try:
        state = scard.SCARD_STATE_UNAWARE
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hresult, states = scard.SCardGetStatusChange(ctx, 1000, [(reader, state)])
            if hresult == scard.SCARD_S_SUCCESS:
                _, state, _ = states[0]
                if state & scard.SCARD_STATE_PRESENT:
                    return time.monotonic()
                state &= ~scard.SCARD_STATE_CHANGED
        raise TimeoutError(f"no card seen in {reader}")
    finally:
        scard.SCardReleaseContext(ctx)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--insertions", type=int, default=20)
    parser.add_argument("--data", default="famille_martin.json")
    args = parser.parse_args()

    rig = PcscRig().start()
    try:
        card = rig.plug(args.data, removed=True)
        reader = PcscReader()
        reader_name = READERS[0]
        detection, reading, total = [], [], []
        persons = 0
        rng = random.Random(7)
        for _ in range(args.insertions):
            # a person inserts the card at any moment of pcscd's polling cycle (0.4 s)
            time.sleep(rng.uniform(0.0, 0.5))
            card.toggle()  # inserted
            inserted = card.next_event("inserted")
            present = wait_present(reader_name)
            read = reader.read(reader_name)
            parsed = time.monotonic()
            persons = len(read.persons)
            detection.append((present - inserted) * 1000)
            reading.append((parsed - present) * 1000)
            total.append((parsed - inserted) * 1000)
            card.toggle()  # removed
            card.next_event("removed")
            wait_card_state(reader_name, present=False)
        print(f"carte Vitale: {args.insertions} insertions, {persons} persons on the card ({args.data})")
        for label, samples in (
            ("pcscd detection", detection),
            ("read + parse", reading),
            ("insertion → persons", total),
        ):
            p = percentiles(samples)
            print(
                f"  {label:<22} median {p['p50']:7.1f} ms   p95 {p['p95']:7.1f} ms   max {p['max']:7.1f} ms"
            )
    finally:
        rig.stop()


if __name__ == "__main__":
    main()
