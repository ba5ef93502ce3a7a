"""The chaos checker for many leases on hand-made recordings: a clean one passes, and each
per-lease violation (two holders of one lease at once, a term granted twice for one lease,
a stale write on one lease's key, a lease left without a holder) MUST be flagged, for that
lease only: what is fine across two leases (two holders at once, a lower term than another
lease's) must not be."""

from __future__ import annotations

import json

from tests.chaos.checker import check
from tests.chaos.cluster import tenures_from_log
from tests.chaos.recording import (
    Fault,
    Incarnation,
    ProbeWrite,
    Recording,
    RunSettings,
    Sample,
    Tenure,
)

T0 = 1_000_000
L0, L1 = "shard-0", "shard-1"


def settings() -> RunSettings:
    return RunSettings(lease_ttl=2.0, renew_interval=0.5, heartbeat_interval=0.5,
                       renew_failure_threshold=2, daemons=2, leases=[L0, L1])


def changed(lease: str, term: int, holder: str, at: int) -> dict[str, object]:
    return {"type": "leader_changed", "lease": lease, "holder_id": holder, "term": term, "at": at}


def probe(node: str, term: int, seq: int, lease: str) -> str:
    return json.dumps({"node_id": node, "term": term, "seq": seq, "lease": lease})


def clean() -> Recording:
    """a holds shard-0 (term 10), b shard-1 (term 11); a is killed at T0+1000, b takes
    shard-0 with term 20 at T0+3100 (re-homed in 2100 ms); all checks pass."""
    events = [changed(L0, 10, "a", T0), changed(L1, 11, "b", T0), changed(L0, 20, "b", T0 + 3100)]
    writes = [ProbeWrite("a", 0, 10, True, T0 + 100 + 500 * i, lease=L0) for i in range(2)]
    writes += [ProbeWrite("b", 0, 20, True, T0 + 3200 + 500 * i, lease=L0) for i in range(3)]
    writes += [ProbeWrite("b", 0, 11, True, T0 + 100 + 500 * i, lease=L1) for i in range(10)]
    samples = [
        Sample(T0 + 20, None, "a", 10, T0, None, lease=L0),
        Sample(T0 + 120, T0 + 100, "a", 10, T0, probe("a", 10, 1, L0), lease=L0),
        Sample(T0 + 620, T0 + 600, "a", 10, T0 + 500, probe("a", 10, 2, L0), lease=L0),
        Sample(T0 + 3120, T0 + 3100, "b", 20, T0 + 3100, probe("a", 10, 2, L0), lease=L0),
        Sample(T0 + 3220, T0 + 3200, "b", 20, T0 + 3100, probe("b", 20, 1, L0), lease=L0),
        *[Sample(T0 + 20 + 500 * i, T0 + 500 * i, "b", 11, T0 + 500 * i,
                 probe("b", 11, i, L1), lease=L1) for i in range(12)],
    ]
    return Recording(
        seed=15, settings=settings(), started_ms=T0 - 1000, ended_ms=T0 + 9000,
        faults=[Fault(0, "kill_leader", T0 + 1000, None, "a", "a", None, ["a"], {}, T0 + 4000)],
        writes=writes, samples=samples, channel=list(events), history=list(events),
        incarnations=[
            Incarnation("a", 0, T0 - 1000, T0 - 900, T0 + 1000, -9, "kill"),
            Incarnation("a", 1, T0 + 3300, T0 + 3500, T0 + 9000, 0, "term"),
            Incarnation("b", 0, T0 - 1000, T0 - 900, T0 + 9000, 0, "term"),
        ],
        watcher_final=["b", 20], redis_final=["b", 20],
        tenures=[Tenure("a", 0, L0, 10, T0 + 5, None, started_line=3),
                 Tenure("b", 0, L1, 11, T0 + 5, T0 + 8900, "daemon stopping", 3, 90),
                 Tenure("b", 0, L0, 20, T0 + 3110, T0 + 8900, "daemon stopping", 40, 91)],
        leases_final={L0: ["b", 20], L1: ["b", 11]})


def checks(rec: Recording) -> set[str]:
    return {f"{v.category}.{v.check}" for v in check(rec).violations}


def test_a_clean_recording_of_many_leases_passes_and_measures_the_re_home() -> None:
    verdict = check(clean())
    assert verdict.ok, verdict.violations
    [measure] = verdict.measures
    assert measure.to_leader_ms == 2100 and measure.target_ms == 2500 and not measure.over_target
    assert verdict.overlaps == []


def test_a_recording_with_tenures_survives_json() -> None:
    rec = clean()
    assert Recording.from_json(json.loads(json.dumps(rec.to_json()))) == rec


def test_two_holders_of_one_lease_overlapping_is_flagged() -> None:
    rec = clean()  # b leader of shard-0 from T0+500 while a still is (until its kill)
    rec.tenures.append(Tenure("b", 0, L0, 15, T0 + 500, T0 + 800, "lease released", 10, 12))
    verdict = check(rec)
    [v] = [v for v in verdict.violations if v.check == "holder_overlap"]
    assert v.category == "safety" and "lease shard-0" in v.detail and "300 ms" in v.detail


def test_two_holders_of_two_leases_at_once_is_fine() -> None:
    rec = clean()  # b hands shard-1 to a at T0+3900 and keeps shard-0: a and b lead at once
    rec.tenures[1].ended_ms = T0 + 3900
    rec.tenures.append(Tenure("a", 1, L1, 30, T0 + 4000, T0 + 4500, "lease released", 5, 9))
    assert "safety.holder_overlap" not in checks(rec)
    rec.tenures[1].ended_ms = T0 + 4100  # but b still shard-1's leader then: flagged
    assert "safety.holder_overlap" in checks(rec)


def test_a_term_granted_twice_for_one_lease_is_flagged_but_one_term_on_two_leases_is_not() -> None:
    rec = clean()
    rec.channel.append(changed(L0, 20, "a", T0 + 3100))  # term 20 of shard-0 to a and b
    assert checks(rec) == {"safety.duplicate_term", "safety.terms_increase"}
    rec = clean()  # the lease read from Redis: term 20 of shard-0 with a second holder
    rec.samples.append(Sample(T0 + 5000, T0 + 4980, "a", 20, T0 + 5000, None, lease=L0))
    assert checks(rec) == {"safety.duplicate_term"}
    rec = clean()
    rec.channel.append(changed(L1, 20, "b", T0 + 8000))  # shard-1's own term 20: no clash
    rec.history.append(changed(L1, 20, "b", T0 + 8000))
    assert checks(rec) == set()


def test_a_stale_write_on_one_lease_key_is_flagged() -> None:
    rec = clean()  # a's term 10 accepted on shard-0's key after term 20 was granted there
    rec.writes.append(ProbeWrite("a", 0, 10, True, T0 + 3150, lease=L0))
    [v] = check(rec).violations
    assert v.check == "stale_write" and v.detail.startswith("lease shard-0:")
    rec = clean()  # the same seen only in shard-0's probe record (a write landing late)
    rec.samples.append(Sample(T0 + 3720, T0 + 3700, "b", 20, T0 + 3600, probe("a", 10, 9, L0),
                              lease=L0))
    assert checks(rec) == {"safety.stale_write"}


def test_a_lower_term_than_another_lease_s_is_not_stale() -> None:
    rec = clean()  # shard-1's term 11, accepted after shard-0's term 20: shard-1's own term
    rec.writes.append(ProbeWrite("b", 0, 11, True, T0 + 5150, lease=L1))
    assert check(rec).ok


def test_an_old_term_accepted_after_a_newer_on_one_lease_breaks_the_fence_order() -> None:
    rec = clean()
    rec.writes.append(ProbeWrite("a", 0, 10, True, T0 + 3400, lease=L0))
    assert {"safety.fence_order", "safety.stale_write"} <= checks(rec)


def test_a_lease_s_term_going_back_is_flagged() -> None:
    rec = clean()
    rec.channel.append(changed(L0, 15, "b", T0 + 5000))
    assert "safety.terms_increase" in checks(rec)


def test_a_lease_never_held_again_is_stranded() -> None:
    rec = clean()  # b never takes shard-0
    rec.channel = [e for e in rec.channel if e["term"] != 20]
    rec.history = [e for e in rec.history if e["term"] != 20]
    rec.samples = [s for s in rec.samples if s.term != 20]
    rec.writes = [w for w in rec.writes if w.term != 20]
    rec.tenures = [t for t in rec.tenures if t.term != 20]
    rec.leases_final[L0] = None
    rec.watcher_final = rec.redis_final = None
    found = [v for v in check(rec).violations if v.check == "stranded"]
    assert len(found) == 2  # after the fault, and at the run's end
    assert all("shard-0" in v.detail for v in found)


def test_a_lease_re_homed_beyond_ttl_plus_renew_plus_one_second_is_stranded() -> None:
    rec = clean()
    for e in (*rec.channel, *rec.history):
        if e["term"] == 20:
            e["at"] = T0 + 4600  # 3600 ms after the kill: beyond 2500 + 1000
    assert checks(rec) == {"liveness.stranded"}


def test_a_clock_jump_is_taken_off_a_holder_s_stamps() -> None:
    rec = clean()  # a leads shard-1 after b; a's clock is 60 s behind from T0+4000 to T0+6000
    rec.tenures = [t for t in rec.tenures if t.lease != L1]
    rec.tenures += [Tenure("b", 0, L1, 11, T0 + 5, T0 + 4500, "lease released", 3, 50),
                    Tenure("a", 1, L1, 30, T0 + 4600 - 60_000, T0 + 5800 - 60_000, "x", 10, 20)]
    rec.faults.append(Fault(1, "clock_jump", T0 + 4000, T0 + 6000, "a", None, None, [],
                            {"offset_s": -60}, T0 + 6200))
    verdict = check(rec)
    assert not any(v.check == "holder_overlap" for v in verdict.violations), verdict.violations
    rec.tenures[-1].started_ms = T0 + 4400 - 60_000  # a in at 4400 real: b until 4500
    assert "safety.holder_overlap" in checks(rec)


def test_a_stopped_holder_ending_soon_after_sigcont_is_measured_not_flagged() -> None:
    rec = clean()  # a SIGSTOPped T0+1000..T0+3500 while b takes shard-0 at T0+3110
    rec.faults = [Fault(0, "pause_leader", T0 + 1000, T0 + 3500, "a", "a", None, [], {},
                        T0 + 4000)]
    rec.incarnations[0] = Incarnation("a", 0, T0 - 1000, T0 - 900, T0 + 9000, 0, "term")
    rec.incarnations.pop(1)
    rec.tenures[0] = Tenure("a", 0, L0, 10, T0 + 5, T0 + 3600, "local lease deadline passed", 3,
                            60)
    verdict = check(rec)
    assert verdict.ok, verdict.violations
    [overlap] = verdict.overlaps
    assert overlap.allowed and overlap.frozen and overlap.ms == 490
    assert verdict.resumed_holder_ms == {0: 100}
    rec.tenures[0].ended_ms = T0 + 4600  # 1100 ms after SIGCONT: beyond the bound
    assert "safety.holder_overlap" in checks(rec)


def test_a_graceful_stop_whose_lease_is_not_granted_at_once_is_flagged() -> None:
    rec = clean()
    rec.faults = [Fault(0, "graceful_stop", T0 + 1000, None, "a", "a", None, ["a"], {},
                        T0 + 4000)]
    rec.incarnations[0] = Incarnation("a", 0, T0 - 1000, T0 - 900, T0 + 1200, 0, "term")
    released = {"type": "lease_released", "lease": L0, "holder_id": "a", "term": 10,
                "handoff_to": "b", "at": T0 + 1100}
    rec.history.append(released)  # and b's grant of shard-0 comes at T0+3100: 2 s later
    assert checks(rec) == {"liveness.graceful"}
    assert check(rec).handovers == [(0, 2000)]
    for e in (*rec.channel, *rec.history):
        if e["term"] == 20:
            e["at"] = T0 + 1130
    verdict = check(rec)
    assert verdict.ok, verdict.violations
    assert verdict.handovers == [(0, 30)]


def test_a_clock_jump_that_moves_a_lease_is_flagged() -> None:
    rec = clean()
    rec.faults.append(Fault(1, "clock_jump", T0 + 5000, T0 + 6000, "b", None, None, [],
                            {"offset_s": 600}, T0 + 6500))
    rec.history.append(changed(L1, 30, "a", T0 + 5500))
    assert "liveness.calm" in checks(rec)


def test_a_clock_jump_that_never_settled_is_judged_until_the_next_fault() -> None:
    rec = clean()  # the jump never settled; a later kill moves shard-1: not the jump's doing
    rec.faults.append(Fault(1, "clock_jump", T0 + 5000, T0 + 6000, "b", None, None, [],
                            {"offset_s": 600}, None))
    rec.faults.append(Fault(2, "kill_standby", T0 + 7000, None, "b", None, None, ["b"], {},
                            T0 + 8500))
    rec.history.append(changed(L1, 30, "a", T0 + 7500))
    assert "liveness.calm" not in checks(rec)


def test_tenures_are_read_from_each_lease_s_state_changes() -> None:
    def line(lease: str, frm: str, to: str, term: int, second: int) -> dict[str, object]:
        return {"event": "state.changed", "lease": lease, "from": frm, "to": to, "term": term,
                "reason": f"{frm}->{to}", "timestamp": f"2026-12-08T02:05:{second:02d}.250000Z"}

    entries = [{"event": "daemon.started", "timestamp": "2026-12-08T02:05:00.000000Z"},
               line(L0, "standby", "leader", 7, 1), line(L1, "standby", "leader", 8, 2),
               {"event": "state.changed", "from": "standby", "to": "leader", "term": 1,
                "timestamp": "2026-12-08T02:05:03.000000Z"},  # no lease: not a member's
               line(L0, "leader", "standby", 7, 4)]
    t0, t1 = tenures_from_log("a", 2, entries)
    assert (t0.lease, t0.term, t0.ended_ms - t0.started_ms, t0.started_line, t0.ended_line) == (
        L0, 7, 3000, 1, 4)
    assert (t1.lease, t1.term, t1.ended_ms, t1.reason) == (L1, 8, None, "")
