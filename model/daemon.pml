/* daemon.pml: one daemon's local state and its decisions, as coordinator/daemon/state.py and
 * coordinator/daemon/daemon.py make them (lease_step, the renew fast path and its fallback in
 * Lease.acquire, hand_over, fenced_set).
 *
 * A node's local clock is CLOCK_BOOTTIME: it never goes back and runs on through pauses;
 * it is now - lag[n] with 0 <= lag[n] <= DRIFT, so over any window it differs from real
 * time (and from the Redis clock, barring a step) by at most DRIFT ticks.
 */
mtype = { leader, standby, degraded, acquire, renew, release };
#define LEADER leader
#define STANDBY standby
#define DEGRADED degraded

byte lag[N + 1];
#define LOC(n) (now - lag[n])

byte inc[N + 1];               /* restarts so far: instance id = n * 4 + inc[n] */
#define INST(n) (n * 4 + inc[n])
mtype role[N + 1];
byte term[N + 1];
byte dl[N + 1];                /* local deadline, meaningful while role == LEADER */
byte fails[N + 1];
bit reached[N + 1];            /* ever_reached_redis */
byte hs[N + 1];                /* highest_seen_term (the events channel raises nothing) */
bit held[N + 1];               /* Lease._held: take the renew fast path */
byte last_rnow[N + 1];         /* Redis TIME and local time of the last grant's reply */
byte last_loc[N + 1];

/* the one lease request a node has in flight (its connection): kind, the instance and
 * highest term it carries, the term and target of a release */
#define RQ_NONE 0
#define RQ_ACQ acquire
#define RQ_RENEW renew
#define RQ_REL release
mtype rq[N + 1];
byte rq_inst[N + 1];
byte rq_hs[N + 1];
byte rq_term[N + 1];
byte rq_target[N + 1];
bit late[N + 1];               /* the request was delayed past the daemon's timeout */
byte lates = 0;
bit waiting[N + 1];            /* the daemon awaits the reply of rq (within OP_TIMEOUT) */
byte sent[N + 1];              /* local time the current acquire() call began */
byte rp[N + 1];                /* the reply, once Redis served the request */
byte rp_term[N + 1];
byte rp_rnow[N + 1];
bit rp_acked[N + 1];
#ifdef PROP_TENURE
byte rp_ginst[N + 1];          /* ghost: instance id the replied term was granted to */
#endif

/* the one fenced write a node has in flight: the tenure it carries */
byte fq_term[N + 1];
byte fq_inst[N + 1];           /* 0 = none in flight */

/* ghost: the newest tenure (highest term) some node started trusting (StartLeading) */
byte lt_term = 0;
byte lt_inst = 0;
byte crashes = 0;
bit led = 0;            /* LIVE: some daemon started or went on leading during this tick */
byte releases = 0;

#define SCHED(n) (up[n] && role[n] == LEADER && LOC(n) < dl[n])   /* state.can_schedule */

/* state.step(Failed): count; degraded (and the deadline dropped) at the threshold or if
 * Redis was never reached; a leader below the threshold keeps its deadline */
inline failed(n) {
  fails[n] = (fails[n] < THRESH -> fails[n] + 1 : THRESH);
  if
  :: fails[n] >= THRESH || !reached[n] -> role[n] = DEGRADED
  :: else -> skip
  fi
}

/* state.step(Granted) = state._granted */
inline granted(n) {
  reached[n] = 1;
  if
  :: LOC(n) >= sent[n] + TTL - MARGIN ->
       failed(n)                 /* the reply came after its deadline: not trusted */
  :: else ->
#ifndef NO_STEP_RULE
       if
       :: (role[n] == LEADER && term[n] == rp_term[n]
           && rp_rnow[n] - last_rnow[n] > LOC(n) - last_loc[n] + MARGIN) ->
            /* Redis's clock moved further than ours between renewals: leave at once */
            role[n] = STANDBY
       :: else ->
#endif
            if
            :: (role[n] != LEADER || term[n] != rp_term[n]) && rp_term[n] >= lt_term ->
                 lt_term = rp_term[n]; lt_inst = INST(n)   /* StartLeading, newest term */
            :: else -> skip
            fi;
#ifdef PROP_TENURE
            /* a daemon trusts only a tenure granted to its own process (the lease's
             * instance id at the time Redis served the request) */
            assert(rp_ginst[n] == INST(n));
#endif
            role[n] = LEADER; term[n] = rp_term[n]; led = 1;
#ifdef MUT_DEADLINE_FROM_REPLY
            dl[n] = LOC(n) + TTL - MARGIN;   /* mutation: counted from the reply's arrival */
#else
            dl[n] = sent[n] + TTL - MARGIN;
#endif
            fails[n] = 0;
            hs[n] = (rp_term[n] > hs[n] -> rp_term[n] : hs[n])
#ifndef NO_STEP_RULE
       fi
#endif
       ;
       last_rnow[n] = rp_rnow[n]; last_loc[n] = LOC(n)
  fi
}

/* state.step(HeldByOther) */
inline held_by_other(n) {
  role[n] = STANDBY; fails[n] = 0; reached[n] = 1;
  hs[n] = (rp_term[n] > hs[n] -> rp_term[n] : hs[n])
}

/* a fresh process: new instance id, nothing known (state.State()) */
inline fresh(n) {
  role[n] = STANDBY; term[n] = 0; dl[n] = 0; fails[n] = 0; reached[n] = 0; hs[n] = 0;
  held[n] = 0; waiting[n] = 0; rp[n] = RP_NONE; sent[n] = LOC(n);
  last_rnow[n] = 0; last_loc[n] = 0
}

/* when the lease loop starts its next acquire-or-renew: a leader every renew interval
 * (or later: timers run late), anyone else at any time (the events channel, the aim at
 * the reported expiry, the retry backoff); with LIVE, a non-leader polls every interval */
#ifdef LIVE
#define DUE(n) URGENT_ATTEMPT(n)   /* LIVE: each daemon polls every renew interval */
#else
#define DUE(n) (LOC(n) >= sent[n] + RENEW || (role[n] != LEADER && !reached[n]))
#endif
#define URGENT_ATTEMPT(n) (LOC(n) >= sent[n] + RENEW)

/* Values that no longer matter are zeroed, so that states differing only in them are one
 * state (this keeps the search small; it changes no decision). */
inline tidy(n) {
  if :: !waiting[n] -> rp[n] = RP_NONE; rp_term[n] = 0; rp_rnow[n] = 0; rp_acked[n] = 0
#ifdef PROP_TENURE
        ; rp_ginst[n] = 0
#endif
     :: else -> skip fi;
  if :: role[n] != LEADER -> term[n] = 0; dl[n] = 0; last_rnow[n] = 0; last_loc[n] = 0;
#ifndef LIVE
        if :: !waiting[n] -> sent[n] = 0 :: else -> skip fi
#endif
     :: else -> skip fi;
  if :: rq[n] == RQ_NONE -> rq_inst[n] = 0; rq_hs[n] = 0; rq_term[n] = 0; rq_target[n] = 0
     :: else -> skip fi;
  if :: fq_inst[n] == 0 -> fq_term[n] = 0 :: else -> skip fi;
  if :: !up[n] -> role[n] = 0; fails[n] = 0; reached[n] = 0; hs[n] = 0; held[n] = 0;
                  sent[n] = 0; term[n] = 0; dl[n] = 0
     :: else -> skip fi
}

proctype Node(byte n) {
  byte t;
end:
  do
  /* daemon.lease_step -> Lease.acquire: the renew fast path if held, else acquire.lua */
  :: atomic { up[n] && !waiting[n] && rq[n] == RQ_NONE && DUE(n) ->
       sent[n] = LOC(n); waiting[n] = 1; rp[n] = RP_NONE;
       rq[n] = (held[n] -> RQ_RENEW : RQ_ACQ); rq_inst[n] = INST(n); rq_hs[n] = hs[n];
       printf("t=%d node %d sends %e (local %d, highest seen %d)\n", now, n, rq[n], LOC(n), hs[n]) }
  /* the reply, inside the operation timeout */
  :: atomic { up[n] && waiting[n] && rp[n] != RP_NONE && LOC(n) < sent[n] + OP_TIMEOUT ->
       if
       :: rp[n] == RP_LOST ->            /* renew.lua said lost: fall back to acquire.lua */
            held[n] = 0; rp[n] = RP_NONE; rq[n] = RQ_ACQ; rq_inst[n] = INST(n); rq_hs[n] = hs[n]
       :: rp[n] == RP_HELD -> waiting[n] = 0; held[n] = 0; held_by_other(n)
       :: rp[n] == RP_ERR ->             /* an error reply: a failure (scripts.script_errors) */
            waiting[n] = 0; held[n] = 0; reached[n] = 1; failed(n)
       :: rp[n] == RP_RENEW || rp[n] == RP_ACQUIRE ->
            waiting[n] = 0; held[n] = 1;
#ifdef ACK
            if
            :: !rp_acked[n] -> reached[n] = 1; failed(n)   /* only the master has it */
            :: else -> granted(n)
            fi
#else
            granted(n)
#endif
       fi;
       printf("t=%d node %d takes the reply: role %e term %d deadline %d (local %d)\n",
              now, n, role[n], term[n], dl[n], LOC(n));
       tidy(n) }
  /* bounded(): no answer within the operation timeout; the request may still be served
   * later (its reply is then dropped) or be lost */
  :: atomic { up[n] && waiting[n] && LOC(n) >= sent[n] + OP_TIMEOUT ->
       waiting[n] = 0; failed(n);
       printf("t=%d node %d times out: role %e\n", now, n, role[n]); tidy(n) }
#ifdef FENCE
  /* a scheduler pass: LeaderContext.fenced_set with this tenure (it may land any time
   * later, or never) */
  :: atomic { SCHED(n) && fq_inst[n] == 0 -> fq_term[n] = term[n]; fq_inst[n] = INST(n);
       printf("t=%d node %d sends a fenced write (term %d instance %d)\n", now, n, term[n], INST(n)) }
#endif
#ifdef HANDOVER
  /* daemon.hand_over: leader work stops (Released), then release.lua with a target, which
   * request_handoff.lua accepted only while alive and not the holder; target 0 is a plain
   * release (a graceful stop that keeps the process) */
  :: atomic { SCHED(n) && !waiting[n] && rq[n] == RQ_NONE && releases < MAX_HO ->
       releases++;
       select(t : 0 .. N);
       if
       :: t == n -> t = 0
       :: t != 0 && t != n && !ALIVE(t) -> t = 0
       :: else -> skip
       fi;
       rq[n] = RQ_REL; rq_inst[n] = INST(n); rq_term[n] = term[n]; rq_target[n] = t;
       role[n] = STANDBY; held[n] = 0;
       printf("t=%d node %d stops leading and sends release(term %d, to %d)\n", now, n, term[n], t);
       t = 0; tidy(n) }
#endif
#ifdef MUT_EVENT_FLOOR
  /* mutation: the term floor is raised by an event on the channel, which anyone may
   * publish (forged, stale, or of another lease or namespace) */
  :: atomic { up[n] && hs[n] < FORGED -> hs[n] = FORGED;
       printf("t=%d node %d hears an event announcing term %d\n", now, n, FORGED) }
#endif
  /* a crash (kill -9, power): everything local is lost; what is on the wire may land;
   * its heartbeat looks alive for STALE more ticks */
  :: atomic { (up[n] && crashes < MAX_CRASH
#ifdef LIVE
       && !SCHED(n) && !(M.holder == n && LIVE_LEASE) && rq[n] == RQ_NONE && !waiting[n]
       /* LIVE: only a standby dies, with nothing on the wire: no lease outlives its holder */
#endif
       ) -> crashes++; up[n] = 0; hb_left[n] = STALE; waiting[n] = 0;
       printf("t=%d node %d crashes\n", now, n); tidy(n) }
#ifndef LIVE
  /* a restart: a new process, a new instance id (LIVE: the dead node stays dead) */
  :: atomic { !up[n] -> up[n] = 1; inc[n]++; fresh(n);
       printf("t=%d node %d restarts as instance %d\n", now, n, INST(n)); tidy(n) }
#endif
  od
}
