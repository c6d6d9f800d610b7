"""Typed view of the ModelDeployment API: constants, spec parsing, conditions. Pure."""
