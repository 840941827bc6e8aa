"""Subcommand groups of the ``camcount`` CLI, one module each."""
