"""Fixtures shared by every test module live in tests/services.py (see its docstring)."""

pytest_plugins = ["tests.services"]
