"""camcount api: the HTTP serving layer (FastAPI): inference, Open Inference Protocol v2, counts, management."""
