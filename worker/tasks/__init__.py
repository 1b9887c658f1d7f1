"""Example tasks shipped with tidings."""
