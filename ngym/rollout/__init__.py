"""Rollout collection and its metrics."""
