"""The children's informer: paged first list, watch from the list's version, 410 -> list again,
vanished objects reported deleted, failures retried with backoff — against a scripted API."""

from __future__ import annotations

import pytest

from modeldeploy.adapters.informer import ADDED, DELETED, LISTED, Informer, backoff, json_lines


def obj(name: str, rv: str, ns: str = "team-a") -> dict:
    return {"metadata": {"namespace": ns, "name": name, "resourceVersion": rv}}


class Script:
    """A ListWatch answering from prepared pages and watch streams; records every request."""

    def __init__(self, lists: list[list[dict]], watches: list):
        self.lists, self.watches = list(lists), list(watches)
        self.requests: list[tuple] = []

    def list_page(self, kind, label_selector, namespace, token, limit):
        self.requests.append(("list", kind, label_selector, namespace, token, limit))
        pages = self.lists[0]
        index = int(token or 0)
        page = pages[index]
        if index + 1 == len(pages):
            self.lists.pop(0)
        return page

    def watch_events(self, kind, label_selector, namespace, resource_version, timeout_seconds):
        self.requests.append(("watch", kind, resource_version))
        item = self.watches.pop(0)
        if isinstance(item, Exception):
            raise item
        return iter(item)


def page(items, rv, cont=""):
    return {"items": items, "metadata": {"resourceVersion": rv, "continue": cont}}


def run(script: Script, rounds: int) -> tuple[Informer, list[tuple[str, str]], list[float]]:
    """``rounds`` steps of an informer on ``script``: (it, the events handed over, each step's wait)."""
    seen: list[tuple[str, str]] = []
    informer = Informer(script, "Pod", "app.kubernetes.io/managed-by=modeldeploy", None,
                        lambda event, o: seen.append((event, o["metadata"]["name"])))
    waits = [informer.step() for _ in range(rounds)]
    return informer, seen, waits


def test_first_list_is_paged_and_marks_items_listed_then_the_watch_resumes_from_its_version():
    script = Script([[page([obj("a", "5")], "10", cont="1"), page([obj("b", "6")], "10")]],
                    [[{"type": "MODIFIED", "object": obj("a", "11")},
                      {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "15"}}}],
                     []])
    informer, seen, waits = run(script, 2)
    assert informer.synced and waits == [0.0, 0.0]
    assert seen == [(LISTED, "a"), (LISTED, "b"), ("MODIFIED", "a")]
    assert [r for r in script.requests if r[0] == "list"][1][4] == "1"  # the continue token was passed
    assert [r for r in script.requests if r[0] == "watch"] == [("watch", "Pod", "10"), ("watch", "Pod", "15")]


def test_gone_lists_again_reporting_changes_as_added_and_vanished_objects_as_deleted():
    script = Script([[page([obj("a", "5"), obj("b", "6")], "10")],
                     [page([obj("b", "30"), obj("c", "31")], "40")]],
                    [[{"type": "ERROR", "object": {"code": 410, "message": "too old resource version"}}],
                     [{"type": "DELETED", "object": obj("c", "41")}]])
    informer, seen, waits = run(script, 2)
    assert waits == [0.0, 0.0]
    assert seen == [(LISTED, "a"), (LISTED, "b"), (ADDED, "b"), (ADDED, "c"), (DELETED, "a"), (DELETED, "c")]
    assert informer.resource_version == "41"
    assert [r[2] for r in script.requests if r[0] == "watch"] == ["10", "40"]


class HTTPGone(Exception):
    status = 410


def test_a_watch_refused_with_http_410_lists_again_at_once():
    script = Script([[page([obj("a", "5")], "10")], [page([obj("a", "50")], "60")]],
                    [HTTPGone("too old resource version"), []])
    informer, seen, waits = run(script, 2)
    assert waits == [0.0, 0.0]
    assert [r[0] for r in script.requests] == ["list", "watch", "list", "watch"]
    assert seen == [(LISTED, "a"), (ADDED, "a")] and informer.resource_version == "60"


def test_a_failed_watch_waits_and_resumes_from_the_last_version_without_listing():
    script = Script([[page([obj("a", "5")], "10")]],
                    [[{"type": "ADDED", "object": obj("d", "12")}], ConnectionResetError("reset"), []])
    informer, seen, waits = run(script, 3)
    assert [r[0] for r in script.requests] == ["list", "watch", "watch", "watch"]
    assert [r[2] for r in script.requests if r[0] == "watch"] == ["10", "12", "12"]
    assert waits == [0.0, 1.0, 0.0] and informer.failures == 0
    assert seen == [(LISTED, "a"), (ADDED, "d")]


def test_failures_in_a_row_back_off_further():
    script = Script([], [])  # every list fails (nothing scripted)
    informer = Informer(script, "Pod", "", None, lambda *_: None)
    assert [informer.step() for _ in range(4)] == [1.0, 2.0, 4.0, 8.0]
    assert not informer.synced


def test_a_stopped_informer_makes_no_request():
    script = Script([], [])
    informer = Informer(script, "Pod", "", None, lambda *_: None)
    informer.stop()
    informer.run()  # returns at once
    assert script.requests == []


@pytest.mark.parametrize("failures, seconds", [(1, 1.0), (2, 2.0), (5, 16.0), (6, 30.0), (50, 30.0)])
def test_backoff_doubles_up_to_half_a_minute(failures, seconds):
    assert backoff(failures) == seconds


def test_json_lines_skips_keep_alive_blank_lines():
    assert list(json_lines(['{"type": "ADDED"}', "", "  ", '{"type": "DELETED"}'])) == [
        {"type": "ADDED"}, {"type": "DELETED"}]
