"""The base layer every other camcount package stands on: settings, errors, the home layout, the topic
catalogue, Kafka and ClickHouse clients, provisioning, logging and the ops HTTP endpoints.

Nothing here imports another camcount package; everything else may import this.
"""
