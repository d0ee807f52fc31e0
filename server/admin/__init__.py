"""Community managers: accounts, sessions, roles, the audit log and the admin API."""
