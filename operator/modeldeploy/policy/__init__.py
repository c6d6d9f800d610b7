"""Pure decision policies (status now; canary, analysis, autoscaling later) with injected clocks."""
