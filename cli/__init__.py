"""The `tidings` command: the client commands (HTTP only) and the operator commands.

Operator commands (`dev`, `server`, `worker`, `migrate`, `keys`) start processes or open
Postgres, so they import the server side lazily and say which extra to install when it
is missing.
"""
