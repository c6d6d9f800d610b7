"""Thin Kopf glue: which events call which reconciler, and how results become Events and retries."""
