"""The use-case floor: one function per user action, called by the TUI and the command line.

Each function opens its unit of work, calls the identity records and rules, the adapters (INSi,
card reader, DMP) and the results gate, and appends the audit event; see docs/architecture.md.
"""
