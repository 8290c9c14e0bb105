"""``identity duplicates`` on a large synthetic database (issue #13), as a ratio to an anchor.

The anchor, measured in the same run, is one plain read of every identity row (the least any
duplicate search must do); the figure is how many such reads ``find_duplicates`` costs. The
synthetic names come from small pools (``_common.synthetic_rows``): many more look-alikes than a
real population, so this is a worst case for the pairwise part.

Run: ``.venv/bin/python bench/bench_duplicates.py [--rows N]`` (default 200,000).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
from _common import synthetic_rows  # type: ignore[import-not-found]

from services.identity.duplicates import find_duplicates
from services.storage.db import Database
from services.storage.models import Identity, Role
from services.users import Actor


def build(db: Database, rows: int) -> None:
    table = Identity.__table__  # type: ignore[attr-defined]
    cols = {c.name for c in table.columns}
    batch: list[dict[str, object]] = []
    with db.engine.begin() as conn:
        for row in synthetic_rows(rows):
            batch.append({k: v for k, v in row.items() if k in cols})
            if len(batch) == 20_000:
                conn.execute(sa.insert(table), batch)
                batch.clear()
        if batch:
            conn.execute(sa.insert(table), batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        db = Database(f"sqlite:///{Path(folder) / 'bench.db'}")
        build(db, args.rows)
        supervisor = Actor("superviseur", Role.SUPERVISOR)
        anchors, searches = [], []
        pairs = 0
        for _ in range(3):  # interleaved: anchor, search, anchor, search...
            started = time.perf_counter()
            with db.session() as session:
                session.execute(sa.select(Identity.__table__)).all()  # type: ignore[attr-defined]
            anchors.append(time.perf_counter() - started)
            started = time.perf_counter()
            with db.session() as session:
                pairs = len(find_duplicates(session, actor=supervisor))
            searches.append(time.perf_counter() - started)
        db.dispose()
    anchor, search = min(anchors), min(searches)
    print(f"{args.rows} identities, {pairs} candidate pairs")
    print(f"full read of the identities (anchor): {anchor:.2f} s")
    print(f"identity duplicates: {search:.2f} s = {search / anchor:.1f} × the anchor")


if __name__ == "__main__":
    main()
