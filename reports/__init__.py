"""Rendering of stored results: tables, JSON/CSV. A report never recomputes a measurement."""
