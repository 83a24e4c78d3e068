"""Loom compute plane."""
