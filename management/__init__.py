"""Model, experiment and API-key actions shared by the CLI and the HTTP API; each one writes an audit record."""
