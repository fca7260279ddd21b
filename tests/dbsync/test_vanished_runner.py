"""A runner that vanishes without closing its socket: with keepalive settings its backend, and the
locks and snapshot it holds, are ended within seconds; without them the backend is still there.

The mechanism is benchmarks/vanish.py's: a private network namespace (`unshare --net`) with its own
server on that namespace's 127.0.0.1, clients over TCP, then every packet on that `lo` dropped
silently (netem loss 100%, or an ingress BPF drop where the kernel has no netem) and the clients
SIGKILLed; the backends are watched over the server's Unix socket. The values here are small
(keepalives after 1 s, every 1 s, 2 probes, tcp_user_timeout 2 s, client_connection_check_interval
1 s) so that the test takes seconds; `python -m benchmarks.vanish` measures the sync's own values.
"""

from __future__ import annotations

import pytest

from tests.support.vanish import ENDS_WITHIN, SCENARIOS, WINDOW  # noqa: F401

pytestmark = pytest.mark.pg  # a server of its own, inside the namespace




@pytest.mark.parametrize("scenario", SCENARIOS)
def test_keepalives_end_a_vanished_clients_backend_and_its_locks(vanished, scenario):
    r = vanished[f"{scenario}-fast"]
    assert r["holding"], r  # it held its table's locks when its client vanished
    assert r["gone_after"] is not None and r["gone_after"] < ENDS_WITHIN, r
    assert r["locks_gone_after"] is not None and r["locks_gone_after"] <= r["gone_after"] + 0.5, r
    # What ended it is the dead connection, not a statement or transaction timeout.
    expected = "connection to client lost" if scenario == "cpu" else "could not receive data from client"
    assert expected in (r["ended_by"] or ""), r


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_without_them_the_backend_outlives_its_client(vanished, scenario):
    r = vanished[f"{scenario}-none"]
    assert r["holding"], r
    assert r["gone_after"] is None and r["locks_gone_after"] is None, r  # still there after WINDOW s


def test_the_copy_holds_truncates_lock_and_the_idle_source_its_snapshot(vanished):
    assert "AccessExclusiveLock" in vanished["copy_in-fast"]["holding"]
    assert vanished["idle_tx-fast"]["backend_xmin"] is not None
