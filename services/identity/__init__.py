"""The identity floor: identity rules and identity records.

Rules — pure functions and small value objects, no database: strict traits (``traits``), birth
date (``birthdate``), birthplace (``birthplace``, the INSEE COG), the matricule INS
(``matricule``), the status machine and flags (``status``), the identity documents
(``documents``). Records — keyword-only functions on the caller's session, each checking rights
and inputs and auditing its change: ``records`` (create, read, the shared row helpers), ``edit``,
``proofs``, ``flags``, ``attach`` (the INS of an INSi answer), ``ins_claims`` (one INS, one
identity), ``ins_environment`` (test INS), ``merge``, ``duplicates``; ``search`` and ``view`` read.

Nothing here knows INSi, the card or the lab results: the use cases that combine them are in
:mod:`services.desk`. The rules and their official ids (EXI SI 07, EXI ID 29…) are summed up in
docs/cli.md.
"""
