"""The small shared core every service imports: config, ids, tenancy, db, bus, events, logs, metrics."""
