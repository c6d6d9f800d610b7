"""The load generator of the network tests lives in the package (the canary benchmark and demo use it too)."""

from modeldeploy.sandbox.traffic import Outcome, Traffic, infer_body

__all__ = ["Outcome", "Traffic", "infer_body"]
