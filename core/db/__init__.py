"""Postgres access: the pool, and one module of named statements per table."""
