"""insdesk user interfaces: the Textual app and the command line."""
