"""The sandbox's pod network, pure parts and range claims: address allocation, ranges, `ip` output, and
claims that are exclusive between live sandboxes and free again once a sandbox's processes are gone."""

import doctest
import signal
import subprocess
import sys
import textwrap

import pytest

from modeldeploy.sandbox import podnet


def test_docstring_examples():
    assert doctest.testmod(podnet).failed == 0


R = podnet.PodRange.parse("10.244.7.0/29")          # pods .2 - .6, gateway .1


@pytest.mark.parametrize("used,last,expected", [
    ([], None, "10.244.7.2"),
    (["10.244.7.2", "10.244.7.3"], None, "10.244.7.4"),
    ([], "10.244.7.2", "10.244.7.3"),                  # round-robin: not the lowest free one
    (["10.244.7.3"], "10.244.7.2", "10.244.7.4"),
    ([], "10.244.7.6", "10.244.7.2"),                  # wraps
    (["10.244.7.2"], "10.244.7.6", "10.244.7.3"),
    ([], "10.244.7.1", "10.244.7.2"),                  # the gateway is never a pod's
    ([], "10.9.9.9", "10.244.7.2"),                    # a last address from elsewhere is ignored
    ([f"10.244.7.{i}" for i in range(2, 7)], None, None),
])
def test_next_address(used, last, expected):
    assert podnet.next_address(R, used, last) == expected


def test_a_range_never_hands_out_its_network_gateway_or_broadcast_address():
    addresses = podnet.PodRange.parse("10.244.7.0/24").pod_addresses()
    assert addresses[0] == "10.244.7.2" and addresses[-1] == "10.244.7.254" and len(addresses) == 253


def test_candidates_are_not_loopback_and_do_not_overlap():
    ranges = podnet.candidate_ranges()
    assert len(ranges) == 255 and not any(r.is_loopback for r in ranges)
    assert len({r.cidr for r in ranges}) == len(ranges) and ranges[0].cidr == "10.244.1.0/24"
    assert podnet.PodRange.parse("127.5.6.0/24").is_loopback


def test_too_small_a_range_is_refused():
    with pytest.raises(ValueError, match="too small"):
        podnet.PodRange.parse("10.244.7.0/30")


def test_flush_removes_only_the_ranges_addresses():
    class Recorded:
        def __init__(self):
            self.present = {"127.0.0.1", "10.244.7.1", "10.244.7.2", "10.244.7.5", "10.244.8.2"}

        def addresses(self):
            return sorted(self.present)

        def remove(self, ip):
            self.present.discard(ip)

        def add(self, ip):
            self.present.add(ip)

    lo = Recorded()
    assert sorted(podnet.flush(R, lo, keep=[R.gateway])) == ["10.244.7.2", "10.244.7.5"]
    assert lo.present == {"127.0.0.1", "10.244.7.1", "10.244.8.2"}


# --- claims: real flock, real processes -----------------------------------------------------------------

CANDIDATES = [podnet.PodRange.parse(f"10.244.{i}.0/24") for i in (201, 202, 203)]


def test_claims_are_exclusive_and_released_with_their_holder(tmp_path):
    first = podnet.claim_range("/sandbox/a", tmp_path, CANDIDATES)
    second = podnet.claim_range("/sandbox/b", tmp_path, CANDIDATES)
    assert (first.pod_range.cidr, second.pod_range.cidr) == ("10.244.201.0/24", "10.244.202.0/24")
    assert podnet.holder(first.path) == "/sandbox/a" and podnet.is_claimed(first.pod_range, tmp_path)
    first.release()
    assert not podnet.is_claimed(first.pod_range, tmp_path)
    third = podnet.claim_range("/sandbox/c", tmp_path, CANDIDATES)   # a claim lasts while its handle is open
    fourth = podnet.claim_range("/sandbox/d", tmp_path, CANDIDATES)
    assert (third.pod_range.cidr, fourth.pod_range.cidr) == ("10.244.201.0/24", "10.244.203.0/24")
    with pytest.raises(podnet.RangeBusy, match="every /24 is claimed"):
        podnet.claim_range("/sandbox/e", tmp_path, CANDIDATES)


def test_a_claim_passed_to_a_child_outlives_the_claimer_and_ends_when_the_child_is_killed(tmp_path):
    """How the sandbox holds its range: `up` claims, hands the locked descriptor to long-lived processes and
    exits; the claim lasts while they live, and a SIGKILLed sandbox's range is free again (stale claim)."""
    claim = podnet.claim_range("/sandbox/a", tmp_path, CANDIDATES)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], pass_fds=(claim.fileno(),))
    try:
        claim.release()                               # the claimer is done; the child holds the lock
        assert podnet.is_claimed(claim.pod_range, tmp_path)
        other = podnet.claim_range("/sandbox/b", tmp_path, CANDIDATES)
        assert other.pod_range.cidr == "10.244.202.0/24"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        assert not podnet.is_claimed(claim.pod_range, tmp_path)
        assert podnet.claim_range("/sandbox/c", tmp_path, CANDIDATES).pod_range.cidr == "10.244.201.0/24"
    finally:
        child.kill()


def test_claims_hold_across_processes(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        from modeldeploy.sandbox import podnet
        c = [podnet.PodRange.parse(x) for x in {[r.cidr for r in CANDIDATES]!r}]
        held = podnet.claim_range("/sandbox/other", __import__("pathlib").Path({str(tmp_path)!r}), c)
        print(held.pod_range.cidr, flush=True)
        sys.stdin.read()
    """)
    other = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "10.244.201.0/24"
        assert podnet.claim_range("/sandbox/mine", tmp_path, CANDIDATES).pod_range.cidr == "10.244.202.0/24"
    finally:
        other.kill()
        other.wait(timeout=10)


def test_parse_addresses_of_ip_output():
    out = ("1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n"
           "1: lo    inet 10.244.7.1/32 scope global lo\\       valid_lft forever preferred_lft forever\n")
    assert podnet.parse_addresses(out) == ["127.0.0.1", "10.244.7.1"]
    assert podnet.parse_addresses("") == []


def test_missing_ip_binary_says_which_package():
    with pytest.raises(podnet.AddressError, match="iproute2"):
        podnet.Loopback(binary="/nonexistent/ip").add("10.244.7.2")
