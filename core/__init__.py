"""Shared leaf of tidings: settings, job model, events, errors, logging, database access."""
