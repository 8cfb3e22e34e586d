"""Sync scheduling: schedule arithmetic, each integration's next due time, and the beat."""
