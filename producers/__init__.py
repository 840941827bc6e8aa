"""Camera ingestors: read video files, RTSP/HTTP streams or image folders and publish JPEG frames to Kafka."""
