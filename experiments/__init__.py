"""A/B experiments on live traffic: definitions, camera assignment, statistics, reports, guardrails, storage.

Pure modules (config, assignment, stats, report, guardrails) import no Kafka, Redis or ClickHouse client;
``experiments.store`` is the adapter to Redis (experiment state) and ClickHouse (samples).
"""
