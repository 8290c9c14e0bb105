"""``python -m services.dmp_sim``: the local DMP alone (see ``server.main``)."""

from services.dmp_sim.server import main

raise SystemExit(main())
