"""``python -m services.dmp_sim [--port 8766] ...``: the local DMP alone (prints its URL first)."""

from services.dmp_sim.server import main

if __name__ == "__main__":
    raise SystemExit(main())
