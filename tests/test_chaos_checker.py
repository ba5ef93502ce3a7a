"""The chaos checker on hand-made recordings: clean ones pass, broken ones MUST be flagged."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from tests.chaos.checker import ambiguous_steps, check, clear_offset, real_ms
from tests.chaos.recording import (
    ChildRun,
    Fault,
    Incarnation,
    ProbeWrite,
    Recording,
    RunSettings,
    Sample,
)

T0 = 1_000_000
SETTINGS = RunSettings(lease_ttl=2.0, renew_interval=0.5, heartbeat_interval=0.5,
                       renew_failure_threshold=2, daemons=3)


def changed(term: int, holder: str, at: int, previous: str | None = None) -> dict[str, object]:
    return {"type": "leader_changed", "lease": "global", "holder_id": holder, "holder_host": holder,
            "term": term, "previous_holder_id": previous, "at": at}


def probe(node: str, term: int, seq: int) -> str:
    return json.dumps({"node_id": node, "term": term, "seq": seq})


def clean() -> Recording:
    """a leads term 1, is killed at T0+1000; b takes term 2 at T0+3100; all checks pass."""
    events = [changed(1, "a", T0), changed(2, "b", T0 + 3100, "a")]
    writes = [ProbeWrite("a", 0, 1, True, T0 + 100 + 500 * i) for i in range(2)] + [
        ProbeWrite("b", 0, 2, True, T0 + 3200 + 500 * i) for i in range(3)]
    samples = [
        Sample(T0 + 20, None, "a", 1, T0, None),
        Sample(T0 + 120, T0 + 100, "a", 1, T0, probe("a", 1, 1)),
        Sample(T0 + 620, T0 + 600, "a", 1, T0 + 500, probe("a", 1, 2)),
        Sample(T0 + 3120, T0 + 3100, "b", 2, T0 + 3100, probe("a", 1, 2)),
        Sample(T0 + 3220, T0 + 3200, "b", 2, T0 + 3100, probe("b", 2, 1)),
    ]
    return Recording(
        seed=7, settings=SETTINGS, started_ms=T0 - 1000, ended_ms=T0 + 9000,
        faults=[Fault(0, "kill_leader", T0 + 1000, None, "a", "a", 1, ["a"], {}, T0 + 4000)],
        writes=writes, samples=samples, channel=list(events), history=list(events),
        incarnations=[
            Incarnation("a", 0, T0 - 1000, T0 - 900, T0 + 1000, -9, "kill"),
            Incarnation("a", 1, T0 + 3300, T0 + 3500, T0 + 9000, 0, "term"),
            Incarnation("b", 0, T0 - 1000, T0 - 900, T0 + 9000, 0, "term"),
        ],
        watcher_final=["b", 2], redis_final=["b", 2])


def checks(rec: Recording) -> set[str]:
    return {f"{v.category}.{v.check}" for v in check(rec).violations}


def test_a_clean_recording_passes_and_measures_the_failover() -> None:
    verdict = check(clean())
    assert verdict.ok, verdict.violations
    [measure] = verdict.measures
    assert measure.to_leader_ms == 2100 and measure.target_ms == 2500 and not measure.over_target


def test_a_recording_survives_json() -> None:
    rec = clean()
    assert Recording.from_json(json.loads(json.dumps(rec.to_json()))) == rec


def test_save_and_load(tmp_path: Path) -> None:
    rec = clean()
    rec.save(tmp_path / "r.json")
    assert Recording.load(tmp_path / "r.json") == rec


def test_an_old_term_accepted_after_a_newer_one_is_flagged() -> None:
    rec = clean()
    rec.writes.append(ProbeWrite("a", 0, 1, True, T0 + 3400))  # the resumed old leader
    assert {"safety.fence_order", "safety.stale_write"} <= checks(rec)


def test_an_old_term_accepted_after_a_newer_grant_but_before_any_new_write_is_flagged() -> None:
    rec = clean()
    rec.writes.append(ProbeWrite("a", 0, 1, True, T0 + 3150))  # after term 2 began at 3100
    assert checks(rec) == {"safety.stale_write"}


def test_a_refused_old_write_is_fine() -> None:
    rec = clean()
    rec.writes.append(ProbeWrite("a", 0, 1, False, T0 + 3400, current_term=2))
    assert check(rec).ok


def test_writes_in_the_same_millisecond_are_not_ordered() -> None:
    rec = clean()
    rec.writes.append(ProbeWrite("a", 0, 1, True, T0 + 3100))  # same ms as term 2's grant
    rec.writes.append(ProbeWrite("b", 0, 2, True, T0 + 3100))
    assert check(rec).ok


def test_a_late_landing_seen_only_in_the_probe_record_is_flagged() -> None:
    rec = clean()  # a write whose reply was lost: no daemon logged it, the record shows it
    rec.samples.append(Sample(T0 + 3720, T0 + 3700, "b", 2, T0 + 3600, probe("a", 1, 9)))
    assert checks(rec) == {"safety.stale_write"}


def test_a_term_going_back_on_the_channel_or_in_redis_is_flagged() -> None:
    rec = clean()
    rec.channel.append(changed(2, "c", T0 + 5000, "b"))  # and term 2 has two holders
    assert checks(rec) == {"safety.terms_increase", "safety.duplicate_term"}
    rec = clean()  # Redis restarted and forgot: the lease reads term 1 again, c's this time
    rec.samples.append(Sample(T0 + 6000, T0 + 5000, "c", 1, T0 + 6000, None))
    assert checks(rec) == {"safety.terms_increase", "safety.duplicate_term"}


def test_a_watcher_that_disagrees_with_redis_is_flagged() -> None:
    rec = dataclasses.replace(clean(), watcher_final=["a", 1])
    assert checks(rec) == {"safety.watcher"}
    rec = dataclasses.replace(clean(), redis_final=None)
    assert checks(rec) == {"safety.watcher"}


def test_failover_beyond_ttl_plus_renew_plus_one_second_is_flagged() -> None:
    rec = clean()  # b takes over 3800 ms after the kill: target 2500 + 1000 exceeded
    for e in (*rec.channel, *rec.history):
        if e["term"] == 2:
            e["at"] = T0 + 4800
    assert checks(rec) == {"liveness.new_leader"}
    rec = clean()  # 3000 ms: over the target but within the second beyond it
    for e in (*rec.channel, *rec.history):
        if e["term"] == 2:
            e["at"] = T0 + 4000
    verdict = check(rec)
    assert verdict.ok and verdict.measures[0].over_target


def test_no_new_leader_or_no_settling_is_flagged() -> None:
    rec = clean()
    rec.channel = rec.channel[:1]
    rec.history = rec.history[:1]
    rec.writes = rec.writes[:2]
    rec.samples = rec.samples[:3]
    rec.watcher_final = rec.redis_final = ["a", 1]
    rec.faults[0].settled_ms = None
    assert checks(rec) == {"liveness.new_leader", "liveness.settled"}


def graceful(gap: int, exit_code: int = 0, exit_after: int = 300) -> Recording:
    rec = clean()
    rec.faults = [Fault(0, "graceful_stop", T0 + 1000, None, "a", "a", 1, ["a"], {}, T0 + 2000)]
    released = {"type": "lease_released", "lease": "global", "holder_id": "a", "term": 1,
                "at": T0 + 1200}
    events = [changed(1, "a", T0), released, changed(2, "b", T0 + 1200 + gap, "a")]
    rec.channel, rec.history = list(events), list(events)
    rec.writes = [ProbeWrite("a", 0, 1, True, T0 + 100), ProbeWrite("b", 0, 2, True, T0 + 1900)]
    rec.samples = []
    rec.incarnations[0] = Incarnation("a", 0, T0 - 1000, T0 - 900, T0 + 1000 + exit_after,
                                      exit_code, "term")
    return rec


def test_graceful_stop_within_100_ms_passes_and_slower_or_unclean_is_flagged() -> None:
    verdict = check(graceful(gap=3))
    assert verdict.ok, verdict.violations
    assert verdict.measures[0].to_leader_ms == 3
    assert checks(graceful(gap=150)) == {"liveness.graceful"}
    assert checks(graceful(gap=3, exit_code=1)) == {"liveness.graceful", "lost.stop"}
    assert checks(graceful(gap=3, exit_after=1500)) == {"liveness.graceful"}


def redis_fault(first_activity: int) -> Recording:
    rec = clean()
    rec.faults = [Fault(0, "redis_outage", T0 + 1000, T0 + 8000, None, "a", 1, [],
                        {"lifted_ms": T0 + 7950}, T0 + 9000)]
    rec.channel = [changed(1, "a", T0)]
    rec.history = [changed(1, "a", T0), changed(2, "b", T0 + 8000 + first_activity, "a")]
    rec.writes = [ProbeWrite("a", 0, 1, True, T0 + 100)]
    rec.samples = [Sample(T0 + 8600, T0 + 7000, "b", 2, T0 + 8000 + first_activity, None)]
    return rec


def test_after_a_redis_fault_a_leader_within_one_renew_interval() -> None:
    verdict = check(redis_fault(first_activity=300))
    assert verdict.ok, verdict.violations
    assert verdict.measures[0].to_leader_ms == 300
    assert check(redis_fault(first_activity=-20)).measures[0].to_leader_ms == 0  # before the PING
    assert checks(redis_fault(first_activity=700)) == {"liveness.redis_back"}


def test_a_leader_change_when_only_a_clock_jumped_is_flagged() -> None:
    rec = clean()
    rec.faults = [Fault(0, "clock_jump", T0 + 3200, T0 + 5000, "b", "b", 2, [], {}, T0 + 6000)]
    assert check(rec).ok
    rec.faults[0].started_ms = T0 + 2000  # term 2 began during the jump
    assert checks(rec) == {"liveness.leader_kept"}


def test_a_daemon_that_exits_by_itself_or_never_restarts_is_flagged() -> None:
    rec = clean()
    rec.incarnations[2] = Incarnation("b", 0, T0 - 1000, T0 - 900, T0 + 5000, 1, None)
    assert checks(rec) == {"lost.exited"}
    rec = clean()
    rec.incarnations[1].ready_ms = None
    assert checks(rec) == {"lost.restart"}
    rec = clean()
    rec.incarnations[1].errors = ["lease.loop_error"]
    assert checks(rec) == {"lost.error_logged"}


# ---- issue 11: one term, one tenure ------------------------------------------------------

def test_a_term_granted_to_two_holders_is_flagged_even_across_a_failover() -> None:
    rec = clean()  # the old master granted term 2 to b; the promoted replica grants it to c
    rec.history.append(changed(2, "c", T0 + 6000, "a"))
    assert "safety.duplicate_term" in checks(rec)
    rec = clean()  # seen only in the lease as read from the new master
    rec.samples.append(Sample(T0 + 6000, T0 + 5980, "c", 2, T0 + 6000, None, "i-c", 2))
    assert checks(rec) == {"safety.duplicate_term"}


def test_a_term_with_two_instances_of_one_holder_is_flagged() -> None:
    rec = clean()
    rec.samples = [dataclasses.replace(s, instance_id="i-1") for s in rec.samples]
    assert check(rec).ok
    rec.samples.append(Sample(T0 + 3700, T0 + 3680, "b", 2, T0 + 3700, None, "i-2"))
    assert checks(rec) == {"safety.duplicate_term"}


def test_a_stale_write_a_child_logged_is_flagged_like_the_probes() -> None:
    rec = clean()
    rec.writes.append(ProbeWrite("a", 4242, 1, True, T0 + 3400, source="child"))
    verdict = check(rec)
    assert {f"{v.category}.{v.check}" for v in verdict.violations} == {
        "safety.fence_order", "safety.stale_write"}
    assert verdict.stale_logged() == 1


def test_redis_stamps_taken_while_its_clock_was_stepped_are_put_back_on_the_real_clock() -> None:
    assert real_ms([[T0, T0 + 2000, 3_600_000]], T0 + 3_601_000) == T0 + 1000
    assert real_ms([[T0, T0 + 2000, -3_600_000]], T0 - 3_599_000) == T0 + 1000
    assert real_ms([[T0, T0 + 2000, 3_600_000]], T0 + 1000) == T0 + 1000  # outside: real
    rec = clean()  # term 2's grant stamped an hour ahead: without the step it looks like the
    for e in {id(e): e for e in (*rec.channel, *rec.history)}.values():  # future, and a's
        if e["term"] == 2:  # later write would look fine
            e["at"] += 3_600_000
    rec.redis_clock = [[T0 + 3000, T0 + 3150, 3_600_000]]
    rec.writes.append(ProbeWrite("a", 0, 1, True, T0 + 3300))
    assert "safety.stale_write" in checks(rec)
    assert check(clean()).ok and not check(dataclasses.replace(
        clean(), redis_clock=[[T0 + 3000, T0 + 3150, 3_600_000]])).violations


# ---- issue 12: never two children at once ------------------------------------------------

def with_children(*runs: ChildRun, faults: list[Fault] | None = None) -> Recording:
    rec = clean()
    rec.children = list(runs)
    if faults is not None:
        rec.faults = faults
    return rec


def test_two_nodes_children_running_at_once_are_flagged_and_measured() -> None:
    a = ChildRun("a", 100, 1, T0, [[T0, T0 + 1000]])
    b = ChildRun("b", 200, 2, T0 + 3200, [[T0 + 3200, T0 + 5000]])
    verdict = check(with_children(a, b))
    assert verdict.ok and verdict.longest_overlap() == 0
    a.segments = [[T0, T0 + 3500]]  # a's child ran on while b's had started
    verdict = check(with_children(a, b))
    assert {v.check for v in verdict.violations} == {"child_overlap"}
    assert verdict.longest_overlap() == 300
    assert verdict.longest_overlap("kill_leader", verdict_faults := clean().faults) == 300
    assert verdict.longest_overlap("graceful_stop", verdict_faults) == 0


def test_one_nodes_children_one_after_another_are_no_overlap() -> None:
    first = ChildRun("a", 100, 1, T0, [[T0, T0 + 1000]])
    second = ChildRun("a", 101, 1, T0 + 900, [[T0 + 900, T0 + 2000]])
    assert check(with_children(first, second)).ok


def freeze(resumed_for: int) -> Recording:
    """a's host frozen from T0+1000 to T0+6000; b leads from T0+3100; a's child resumes."""
    fault = Fault(0, "freeze_leader_host", T0 + 1000, T0 + 6000, "a", "a", 1, [],
                  {"child_pid": 100, "hold_s": 5.0}, T0 + 7000)
    a = ChildRun("a", 100, 1, T0, [[T0, T0 + 1000], [T0 + 6000, T0 + 6000 + resumed_for]])
    b = ChildRun("b", 200, 2, T0 + 3200, [[T0 + 3200, T0 + 9000]])
    return with_children(a, b, faults=[fault])


def test_a_child_resumed_with_its_frozen_host_is_bounded_not_forbidden() -> None:
    verdict = check(freeze(resumed_for=30))
    assert verdict.ok, verdict.violations
    assert verdict.resumed_child_ms == {0: 30} and verdict.longest_overlap() == 30
    verdict = check(freeze(resumed_for=1500))
    assert {v.check for v in verdict.violations} == {"frozen_child"}


def test_a_recording_with_children_survives_json() -> None:
    rec = freeze(resumed_for=30)
    rec.redis_clock = [[T0, T0 + 10, 60_000]]
    assert Recording.from_json(json.loads(json.dumps(rec.to_json()))) == rec


# ---- two clock steps whose stepped stretches overlap ---------------------------------------

def overlapping_steps() -> Recording:
    """Seed 7003's case (docs/reliability.md, 740 violations): step 1 (+1973 s) and, 78 s
    later, step 2 (+1895 s) stamp the same stretch of Redis's clock. Term 2 is granted in step 1,
    term 3 in step 2, each a stamp that reads about T0 + 1973 s; 3's writes follow it."""
    one, two = [T0, T0 + 2600, 1_973_000], [T0 + 78_000, T0 + 81_500, 1_895_000]
    rec = clean()
    stamped = T0 + 1_973_400  # Redis's stamp for both grants
    events = [changed(1, "a", T0 - 500), changed(2, "b", stamped, "a"),
              changed(3, "c", stamped + 300, "b")]
    rec.channel, rec.history = list(events), list(events)
    rec.writes = [ProbeWrite("b", 0, 2, True, stamped + 100 + 500 * i) for i in range(4)] + [
        ProbeWrite("b", 0, 2, True, T0 + 3000 + 500 * i) for i in range(3)] + [  # real clock
        ProbeWrite("c", 0, 3, True, stamped + 400 + 500 * i) for i in range(4)]
    rec.samples = []
    rec.faults = [Fault(0, "redis_clock_step", T0, T0 + 2600, ":1", "a", 1, [], {}, T0 + 5000),
                  Fault(1, "redis_clock_step", T0 + 78_000, T0 + 81_500, ":1", "b", 2, [], {},
                        T0 + 85_000)]
    rec.redis_clock = [one, two]
    rec.watcher_final, rec.redis_final = ["c", 3], ["c", 3]
    return rec


def test_a_stamp_two_clock_steps_could_have_taken_is_reported_not_guessed() -> None:
    # before: the stamps of step 2 were put back with step 1's offset, so term 3's grant and
    # writes landed 78 s early and b's later writes of term 2 looked stale (fence_order,
    # stale_write): a checker artifact reported as broken fencing
    found = checks(overlapping_steps())
    assert "safety.fence_order" not in found and "safety.stale_write" not in found
    assert found == {"harness.clock_steps"}


def test_the_harness_picks_step_offsets_whose_stretches_never_overlap() -> None:
    steps = [[T0, T0 + 2600, 1_973_000]]
    # drawn +1895 s at T0 + 78 s: the stamps would collide with the first step's
    offset = clear_offset(1_895_000, T0 + 78_000, 3500, steps)
    assert 1_800_000 <= offset <= 3_600_000 and offset % 1000 == 0
    steps.append([T0 + 78_000, T0 + 78_000 + 3500, offset])
    assert not ambiguous_steps(steps)
    assert clear_offset(-1_900_000, T0 + 78_000, 3500, steps) == -1_900_000  # nothing near
    assert clear_offset(2_500_000, T0 + 78_000, 3500, steps) == 2_500_000
    many: list[list[int]] = []  # a long run: every step clear of all earlier ones
    for i in range(200):
        begun = T0 + 6000 * i
        o = clear_offset((1 if i % 3 else -1) * (1_800_000 + 9_000 * (i % 200)), begun, 4000, many)
        assert 1_800_000 <= abs(o) <= 3_600_000
        many.append([begun, begun + 4000, o])
    assert not ambiguous_steps(many)


def test_a_run_whose_code_changed_midway_is_flagged() -> None:
    # seed 7008 (docs/reliability.md): lua/acquire.lua went from ms to µs terms during the run;
    # a daemon restarted after it granted a µs term, one started before then granted a ms term
    # after an empty restart, and the checker saw terms going back and a stale fenced write
    assert checks(dataclasses.replace(clean(), code_digests=["aaaa", "aaaa"])) == set()
    assert checks(dataclasses.replace(clean(), code_digests=["aaaa", "bbbb"])) == {
        "harness.code_changed"}
    assert check(clean()).ok  # a recording from before the digests: nothing to compare


def test_a_process_crash_must_fail_over_within_one_renew_interval() -> None:
    """kill -9 of the daemon only: its guardian releases at once, so a takeover at the TTL
    (the guardian did not release) is a violation, not a normal failover."""
    rec = clean()  # b takes term 2 2100 ms after the kill: the TTL path
    rec.faults[0] = dataclasses.replace(rec.faults[0], kind="process_crash")
    assert checks(rec) == {"liveness.new_leader"}
    for e in (*rec.channel, *rec.history):
        if e["term"] == 2:
            e["at"] = T0 + 1040  # 40 ms after the kill
    verdict = check(rec)
    assert verdict.ok, verdict.violations
    assert verdict.measures[0].to_leader_ms == 40 and verdict.measures[0].target_ms == 500
