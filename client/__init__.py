"""The tidings client side: the `tidings` command line (and, later, a Python client)."""
