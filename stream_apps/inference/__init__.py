"""The inference consumer group: frames in, detections out, with dynamic batching across owned partitions."""
