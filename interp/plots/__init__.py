"""Matplotlib figures for interp's analyses (object API; functions return a Figure)."""
