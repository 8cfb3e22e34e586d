"""pmsq: the write path of a unified PMS API, run by Celery workers under flow control."""

__version__ = "0.1.0"
