"""Test doubles that run as real servers: a scripted OpenAI-compatible model."""
