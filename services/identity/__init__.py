"""Identity rules: strict traits, birth date, birthplace (COG) and the matricule INS.

Pure functions and small value objects, with no database and no user interface; the rules
and their official ids are in ``../shared/notes/ins-rules.md``.
"""
