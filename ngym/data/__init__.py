"""Data preparation: reading, checking, mixing and exporting rows."""
