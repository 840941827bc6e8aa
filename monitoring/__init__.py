"""Model monitoring core: drift of a model's outputs per camera and model version, and what it points at.

Pure modules: no Kafka, ClickHouse or HTTP client. ``distances`` (PSI, Jensen-Shannon, normalised Wasserstein),
``drift`` (one window against its reference), ``persistence`` (drift that lasts k windows: the onset of an event),
``diagnosis`` (a camera problem or a model problem), ``reference`` (which period a window is compared with).
The adapters live in ``sinks.drift_store`` (ClickHouse) and ``camcount.commands.monitor`` (the role).
"""
