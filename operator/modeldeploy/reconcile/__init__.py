"""Reconcilers: observe -> policy -> adapters -> status. No Kopf imports."""
