"""``python -m services.insi_sim [--port 8765] ...``: the simulator alone (prints its URL first)."""

from services.insi_sim.server import main

if __name__ == "__main__":
    raise SystemExit(main())
