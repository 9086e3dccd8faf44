"""The portal database: users, sessions and API tokens, the change feed, the audit log."""
