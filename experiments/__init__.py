"""A/B experiments on live traffic: definitions, camera assignment, statistics, reports, guardrails, storage.

Pure modules: they import no Kafka, Redis or ClickHouse client. The adapters live in ``sinks``:
``sinks.experiment_store`` (experiment state in Redis) and ``sinks.experiment_samples`` (samples from ClickHouse).
"""
