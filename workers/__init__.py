"""Celery side of pmsq: the app, the job task, the runner, the aggregator, dispatch."""
