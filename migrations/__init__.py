"""Numbered SQL migrations, shipped as package data and read with importlib.resources."""
