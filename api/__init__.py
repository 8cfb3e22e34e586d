"""The producer: FastAPI app with the generic write endpoints and the admin API."""
