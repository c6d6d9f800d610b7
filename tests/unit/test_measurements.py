"""Raw Prometheus samples become per-pod intervals and latency tails (counter resets, summed series, bounds)."""

import doctest
import math

from modeldeploy.policy import measurements as ms


def series(name, pod, points, **labels):
    return ms.RawSeries({"__name__": name, "pod": pod, **labels}, tuple(points))


def test_deltas_follow_prometheus_reset_rule_and_skip_nan():
    assert ms.deltas([(0, 5), (2, 9), (4, math.nan), (6, 12), (8, 3)]) == [(0, 2, 4), (6, 8, 3)]


def test_intervals_sum_failure_reasons_and_keep_only_the_range():
    success = [(0, 0), (2, 10), (4, 30), (6, 30)]
    failures = [[(0, 0), (2, 1), (4, 1), (6, 1)], [(0, 0), (2, 0), (4, 2), (6, 2)]]  # reason=BACKEND, reason=OTHER
    duration = [[(0, 0), (2, 20_000), (4, 60_000), (6, 60_000)]]
    got = ms.pod_intervals("p", success, failures, duration, since=1.0)
    assert [(i.start, i.end, i.successes, i.failures, i.mean_latency_ms) for i in got] == [
        (0, 2, 10, 1, 2.0), (2, 4, 20, 2, 2.0), (4, 6, 0, 0, None)]
    assert got[0].rate == 5.5
    assert ms.pod_intervals("p", success, failures, duration, since=4.0)[0].start == 4


def test_tail_bounds_the_requests_the_summary_covers():
    success = [(t, t * 10.0) for t in range(0, 102, 2)]  # 5 req/s
    tail = ms.pod_tail("p", {0.5: [(98, 1000.0), (100, 1100.0)], 0.99: [(100, 5000.0)], 0.9: [(100, math.nan)]},
                       success)
    assert tail.at == 100 and tail.quantiles == ((0.5, 1100.0), (0.99, 5000.0))
    assert (tail.requests_min, tail.requests_max) == (480, 600)  # (52, 100] and (40, 100]
    assert tail.value(0.99) == 5000.0 and tail.value(0.9) is None


def test_tail_of_a_young_pod_uses_the_whole_counter_as_upper_bound():
    tail = ms.pod_tail("p", {0.99: [(30, 5000.0)]}, [(20, 40.0), (30, 90.0)])
    assert (tail.requests_min, tail.requests_max) == (50, 90)


def test_tail_needs_the_counters_of_the_same_scrape():
    assert ms.pod_tail("p", {0.99: [(30, 5000.0)]}, [(28, 40.0)]) is None
    assert ms.pod_tail("p", {0.99: [(30, math.nan)]}, [(30, 40.0)]) is None


def test_revision_data_groups_by_pod_and_name():
    raw = [
        series(ms.SUCCESS, "a", [(0, 0), (2, 10), (4, 20)]),
        series(ms.FAILURE, "a", [(0, 0), (2, 0), (4, 1)], reason="BACKEND"),
        series(ms.DURATION, "a", [(0, 0), (2, 10_000), (4, 20_000)]),
        series(ms.QUEUE, "a", [(0, 0), (2, 1_000), (4, 2_000)]),
        series(ms.SUMMARY, "a", [(2, 900.0), (4, 1000.0)], quantile="0.99"),
        series(ms.SUMMARY, "a", [(4, 700.0)], quantile="0.5"),
        series(ms.SUCCESS, "b", [(0, 0), (2, 4), (4, 8)]),
    ]
    rev = ms.revision_data("r1", raw, since=0.0, custom={"q": (1.0, 2.0)})
    assert rev.pods == ("a", "b")
    assert rev.requests == 29 and rev.failures == 1
    assert [t.pod for t in rev.tails] == ["a"] and rev.tails[0].quantiles == ((0.5, 700.0), (0.99, 1000.0))
    assert rev.intervals[0].mean_queue_ms == 0.1
    assert rev.custom == {"q": (1.0, 2.0)}


def test_a_pod_first_scraped_after_a_burst_counts_the_burst_an_older_pod_does_not_count_its_past():
    # "new" was born in the range (first sample at 10, after since=5): its first values are requests of the
    # range. "old" has a sample before the range: only its increase inside the range counts.
    raw = [
        series(ms.SUCCESS, "new", [(10, 400), (12, 400)]),
        series(ms.FAILURE, "new", [(10, 3), (12, 3)], reason="BACKEND"),
        series(ms.DURATION, "new", [(10, 800_000), (12, 800_000)]),
        series(ms.SUCCESS, "old", [(4, 1000), (10, 1010), (12, 1020)]),
    ]
    rev = ms.revision_data("r1", raw, since=5.0)
    by_pod = {p: sum(i.successes for i in rev.intervals if i.pod == p) for p in rev.pods}
    assert by_pod == {"new": 400, "old": 20}
    assert rev.failures == 3
    first = next(i for i in rev.intervals if i.pod == "new")
    assert (first.start, first.end, first.mean_latency_ms) == (5.0, 10, 2.0)


def test_docstring_examples():
    assert doctest.testmod(ms).failed == 0
