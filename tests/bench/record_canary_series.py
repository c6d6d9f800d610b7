"""Record a canary's metric series from Prometheus, for the replay benchmark (replay_analysis.py).

Writes the raw samples of Triton's request counters (successes, failures by reason, summed request
and queue time) and request-latency summary quantiles of every pod of a canary and a stable revision
of one ModelDeployment, between two times, in the ``modeldeploy-canary-series/1`` format the replay
harness reads. Raw samples are read with range-vector instant queries (``metric{...}[600s]`` at the
end of each 10-minute chunk), as the operator's analysis reads them, so a replay sees what the
operator would have seen.

Not run yet: real recordings need the sandbox canary e2e (two revisions side by side behind the
sandbox gateway, load through it). The plan, once it exists (docs/canary.md#benchmarks):

1. ``MODELDEPLOY_SANDBOX_DIR=/tmp/sbx-$USER python -m modeldeploy sandbox up``; the operator running;
   ``eval $(python -m modeldeploy sandbox env)`` for ``MODELDEPLOY_PROMETHEUS_URL``.
2. A/A: a digits ModelDeployment with ``strategy: Canary``, steps ``[{setWeight: 10}, {pause: {}}]``,
   ``skipAnalysis: true`` (so the recording is not cut short), then a spec change that makes a new
   revision with the same model (e.g. a ``serving.warmup`` count), load through the gateway for 10+
   minutes at a steady rate, then::

       python tests/bench/record_canary_series.py --prometheus $MODELDEPLOY_PROMETHEUS_URL \\
           --namespace NS --name digits --canary REV --stable REV --last 10m --out aa-1.json

   Several recordings (different times, load levels) make the bootstrap less dependent on one.
3. Faults, for checking the injection against reality: the same with a canary model that fails 1 % of
   requests, and one with an added delay (p99 x1.5); ``--note`` says which.
4. ``python tests/bench/replay_analysis.py --recording aa-1.json --recording aa-2.json --runs 200``.

Usage: python tests/bench/record_canary_series.py --prometheus URL --namespace NS --name MD
           --canary REV --stable REV (--last 10m | --start ISO --end ISO) [--model NAME] --out FILE
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "operator"))

from modeldeploy.adapters.prometheus import SeriesProvider  # noqa: E402
from modeldeploy.api.canary import parse_duration  # noqa: E402
from modeldeploy.policy import measurements as ms  # noqa: E402
from modeldeploy.render import promql  # noqa: E402

FORMAT = "modeldeploy-canary-series/1"
NAMES = [ms.SUCCESS, ms.FAILURE, ms.DURATION, ms.QUEUE]
CHUNK_S = 600


def record(provider: SeriesProvider, *, namespace: str, name: str, canary: str, stable: str, start: datetime,
           end: datetime, model: str | None = None, scrape_interval: float = 2.0,
           note: str = "") -> dict[str, Any]:
    """The recording: every raw sample in (start, end], fetched in chunks of CHUNK_S seconds, merged per series."""
    sel = promql.revisions_selector(namespace, name, [canary, stable], model=model)
    merged: dict[tuple, dict[float, float]] = {}
    labels_of: dict[tuple, dict[str, str]] = {}
    t = start
    while t < end:
        chunk_end = min(end, t + timedelta(seconds=CHUNK_S))
        seconds = max(1, int((chunk_end - t).total_seconds()))
        for query in (promql.raw_samples(NAMES, sel, seconds), promql.raw_samples([ms.SUMMARY], sel, seconds)):
            for s in provider.query_series(query, at=chunk_end):
                key = tuple(sorted(s.labels.items()))
                labels_of[key] = dict(s.labels)
                merged.setdefault(key, {}).update({ts: v for ts, v in s.points if ts > start.timestamp()})
        t = chunk_end
    series = [{"labels": labels_of[k], "points": [[ts, v] for ts, v in sorted(points.items())]}
              for k, points in sorted(merged.items()) if points]
    return {
        "format": FORMAT,
        "scrape_interval": scrape_interval,
        "revisions": {"canary": canary, "stable": stable},
        "canary_start": start.timestamp(),
        "source": {"namespace": namespace, "modeldeployment": name, "start": start.isoformat(),
                   "end": end.isoformat(), "note": note},
        "series": series,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prometheus", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--name", required=True, help="the ModelDeployment")
    parser.add_argument("--canary", required=True, help="canary revision")
    parser.add_argument("--stable", required=True, help="stable revision")
    parser.add_argument("--model", help="Triton model name (the model label); default: any")
    parser.add_argument("--last", help="record the last DURATION (e.g. 10m)")
    parser.add_argument("--start", help="ISO time")
    parser.add_argument("--end", help="ISO time (default now)")
    parser.add_argument("--scrape-interval", type=float, default=2.0)
    parser.add_argument("--note", default="", help="what this recording is (A/A, error +1 pp, ...)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    end = datetime.fromisoformat(args.end) if args.end else datetime.now(timezone.utc)
    if args.last:
        start = end - timedelta(seconds=parse_duration(args.last, "--last"))
    elif args.start:
        start = datetime.fromisoformat(args.start)
    else:
        parser.error("give --last or --start")
    from modeldeploy.adapters.prometheus import PrometheusProvider

    data = record(PrometheusProvider(args.prometheus, timeout=30), namespace=args.namespace, name=args.name,
                  canary=args.canary, stable=args.stable, start=start, end=end, model=args.model,
                  scrape_interval=args.scrape_interval, note=args.note)
    Path(args.out).write_text(json.dumps(data))
    print(f"{args.out}: {len(data['series'])} series, {sum(len(s['points']) for s in data['series'])} samples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
