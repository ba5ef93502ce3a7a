"""Every event prints as a sentence in `coordinator watch` and `coordinator events`, none as
raw JSON: the typed ones, handoff_requested (published by request_handoff.lua), and a type
from a newer version."""

from __future__ import annotations

import pytest

from coordinator.cli.watch import render
from coordinator.protocol.event_models import (
    AutomationModeChanged,
    Disconnected,
    Gap,
    LeaderChanged,
    LeaseExpired,
    LeaseReleased,
    Resync,
    StateChanged,
    WatchEvent,
    parse_event,
)

T = 1_800_000_000_000
EVENTS: list[WatchEvent] = [
    LeaderChanged(lease="global", holder_id="b", holder_host="hb", term=7,
                  previous_holder_id="a", at=T),
    LeaseReleased(lease="global", holder_id="a", term=7, at=T),
    Gap(cursor="1-0", oldest_id="5-0", at=T),
    LeaseExpired(lease="global", holder_id="a", term=7, at=T),
    StateChanged.model_validate({"node_id": "a", "host": "ha", "from": "standby",
                                 "to": "leader", "term": 7, "at": T}),
    AutomationModeChanged(mode="paused", previous_mode="running", at=T),
    Resync(lease="global", holder_id=None, holder_host=None, term=None, lease_expires_at=None,
           at=T),
    Disconnected(at=T),
    # exactly what lua/request_handoff.lua publishes
    parse_event('{"type":"handoff_requested","lease":"global","to":"b","from":"a","at":' + f'{T}}}',
                source="t"),
    parse_event('{"type":"handoff_requested","to":"b","at":' + f'{T}}}', source="t"),
    parse_event('{"type":"quorum_lost","nodes":["a","b"],"at":' + f'{T}}}', source="t"),
    # exactly what lua/leases_change.lua publishes
    parse_event('{"type":"leases_changed","added":["s-0","s-1"],"removed":[],"version":3,"at":'
                + f'{T}}}', source="t"),
    parse_event('{"type":"leases_changed","added":[],"removed":["s-1"],"preferred_for":["s-0"],'
                '"preferred":["n1","n2"],"version":4,"at":' + f'{T}}}', source="t"),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.type)
def test_every_event_renders_as_a_sentence(event: WatchEvent) -> None:
    line = render(event)
    summary = event.summary()
    assert "{" not in summary and '"' not in summary, summary
    assert summary and summary[0].isalpha(), summary
    assert line.endswith(summary)


def test_handoff_requested_names_both_nodes_and_the_lease() -> None:
    summary = EVENTS[8].summary()
    assert "a" in summary.split() and "b" in summary.split() and "global" in summary
    assert "hand" in summary


def test_changes_read_as_sentences_not_arrows() -> None:
    assert "->" not in EVENTS[4].summary() and "->" not in EVENTS[5].summary()
    assert EVENTS[4].summary() == "a on ha went from standby to leader (term 7)"


def test_a_registry_change_says_what_changed() -> None:
    added, removed = EVENTS[-2], EVENTS[-1]
    assert added.type == "leases_changed" and type(added).__name__ == "LeasesChanged"
    assert added.summary() == "leases added 2 leases (s-0, s-1) (registry version 3)"
    assert removed.summary() == ("leases removed 1 lease (s-1); preferred holders n1, n2 for "
                                 "1 lease (s-0) (registry version 4)")
