"""Scoring: pure functions that turn features into anomaly scores and maps."""
