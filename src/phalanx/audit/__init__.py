"""Audit: plans that run several checks and produce one report."""
