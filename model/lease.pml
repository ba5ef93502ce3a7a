/* lease.pml: the lease protocol (terms, who may schedule, fencing, handovers) with
 * three daemons, a master and a replica, and the faults of the environment.
 *
 * Switches (spin -DNAME):
 *   faults     FAULT_FAILOVER (a replica that lacks the last writes becomes master),
 *              FAULT_STEP_BACK (the Redis clock starts STEP ahead, steps back later;
 *              a failover comes after, the replica having caught up at the step back;
 *              STEP_ANY_ORDER drops that assumption), FAULT_LAST (last fault tick),
 *              FAULT_RESTART (the master restarts; PERSIST says what it keeps),
 *              FAULT_STEP (the Redis clock steps forward by STEP ticks)
 *   mitigation ACK (COORDINATOR_MIN_REPLICAS_ACK=1: a grant counts once a replica has it)
 *   actions    FENCE (leaders do fenced writes), HANDOVER (leaders release, to a target)
 *   old bugs   OLD_TERM_RULE, OLD_FENCE, OLD_RESERVE; NO_STEP_RULE (without the new
 *              clock-step rule)
 *   mutations  MUT_RENEW_ANY_INSTANCE (renew.lua without the instance check),
 *              MUT_DEADLINE_FROM_REPLY (deadline from the reply's arrival, not the send),
 *              MUT_EVENT_FLOOR (highest_seen raised by an event anyone may publish),
 *              MUT_NO_EPOCH (acquire.lua without the failover epoch)
 *   properties PROP_TERMS, PROP_OVERLAP (with OV_BOUND), PROP_FENCE, PROP_TENURE, LIVE
 *              (with L_BOUND)
 */
#include "params.pml"
#include "redis.pml"
#include "daemon.pml"

byte faults = 0;        /* faults of Redis so far (one of each kind at most) */
byte stepped = 0;       /* FAULT_STEP_BACK: 0 not yet, 1 stepped forward, 2 and back */
byte fault_at = 255;    /* real time of the first Redis fault */

/* Redis serves node n's lease request: the script runs atomically on the master; with ACK
 * the WAIT in the same round trip reports whether the replica has the write.  The reply
 * reaches a daemon still waiting for it; a daemon that gave up drops it. */
inline serve(n) {
  atomic { REDIS_UP && rq[n] != RQ_NONE ->
    if
    :: rq[n] == RQ_ACQ -> acquire_lua(n, rq_inst[n], rq_hs[n], rp[n], rp_term[n], tmp)
    :: rq[n] == RQ_RENEW -> renew_lua(n, rq_inst[n], rp[n], rp_term[n])
    :: rq[n] == RQ_REL -> release_lua(n, rq_inst[n], rq_term[n], rq_target[n]); rp[n] = RP_NONE
    fi;
    rp_rnow[n] = RNOW;
#ifdef PROP_TENURE
    rp_ginst[n] = (rp[n] == RP_RENEW || rp[n] == RP_ACQUIRE -> M.inst : 0);
#endif
    printf("t=%d redis (server %d, clock %d) runs %e of node %d: reply %d term %d; lease holder %d instance %d term %d expires %d; stored %d, reserved for %d\n",
           now, master, RNOW, rq[n], n, rp[n], rp_term[n], M.holder, M.inst, M.term, M.exp, M.stored, M.res_for);
#ifdef ACK
    if
    :: rp[n] == RP_RENEW || rp[n] == RP_ACQUIRE ->
         if :: copy_srv(master, 1 - master); rp_acked[n] = 1 :: rp_acked[n] = 0 fi
    :: else -> skip
    fi;
#endif
    if
    :: !(waiting[n] && rq_inst[n] == INST(n) && up[n]) -> rp[n] = RP_NONE
    :: else -> skip
    fi;
    tmp = 0; rq[n] = RQ_NONE; rq_inst[n] = 0; rq_hs[n] = 0; rq_term[n] = 0; rq_target[n] = 0;
    if :: rp[n] == RP_NONE -> rp_term[n] = 0; rp_rnow[n] = 0; rp_acked[n] = 0
#ifdef PROP_TENURE
          ; rp_ginst[n] = 0
#endif
       :: else -> skip fi }
}

/* fence.lua for node n's write in flight */
inline fence(n) {
  atomic { REDIS_UP && fq_inst[n] != 0 ->
    if
    :: FENCE_OK(fq_term[n], fq_inst[n]) ->
         printf("t=%d redis accepts node %d's fenced write (term %d instance %d); newest trusted tenure: term %d instance %d\n",
                now, n, fq_term[n], fq_inst[n], lt_term, lt_inst);
#ifdef PROP_FENCE
         /* accepted only from the live tenure: the newest one any node trusts */
         assert(fq_term[n] == lt_term && fq_inst[n] == lt_inst);
#endif
         skip
    :: else -> skip                                 /* stale */
    fi;
    fq_inst[n] = 0; fq_term[n] = 0 }
}

/* the network: a request is lost, or delayed past its daemon's timeout (at most
 * MAX_LATE of them: it then runs whenever Redis gets to it, and its reply is dropped) */
inline network(n) {
  atomic { rq[n] != RQ_NONE && !late[n] ->
    if
    :: rq[n] = RQ_NONE; rq_inst[n] = 0; rq_hs[n] = 0; rq_term[n] = 0; rq_target[n] = 0
    :: lates < MAX_LATE -> lates++; late[n] = 1
    fi }
}

active proctype Redis() {
  byte tmp, n;
end:
  do
  :: serve(1)
  :: serve(2)
#ifndef LIVE
  :: network(1)
  :: network(2)
#endif
#if N >= 3
  :: serve(3)
#ifndef LIVE
  :: network(3)
#endif
#endif
#ifdef FENCE
  :: fence(1)
  :: fence(2)
#if N >= 3
  :: fence(3)
#endif
  :: atomic { fq_inst[1] != 0 -> fq_inst[1] = 0; fq_term[1] = 0 }  /* lost on the wire */
  :: atomic { fq_inst[2] != 0 -> fq_inst[2] = 0; fq_term[2] = 0 }
#endif
  od
}


#if defined(FAULT_STEP_BACK) && !defined(STEP_ANY_ORDER)
#define FO_AFTER_STEP (stepped == 2)   /* the failover comes after the clock stepped back */
#else
#define FO_AFTER_STEP 1
#endif

/* Between two ticks: asynchronous replication and the fsync of appendfsync everysec may
 * catch up (with all writes so far, or not), and one Redis fault may strike.  Writes of
 * the tick before are thus the "last k writes" a failover or a restart can lose. */
inline between_ticks() {
#if defined(FAULT_FAILOVER) || defined(ACK)
  if :: copy_srv(master, 1 - master) :: skip fi;
#endif
#ifdef FAULT_RESTART
  if :: PERSIST == 1 -> copy_srv(master, 2) :: skip fi;
#endif
  if
  :: skip
#ifdef FAULT_FAILOVER
  /* failover: the replica, lacking the writes since it last caught up, becomes master;
   * clients reach it FO_DOWN ticks later; its clock agrees with the old master's */
  :: faults == 0 && now <= FAULT_LAST && FO_AFTER_STEP ->
       faults++; fault_at = now; master = 1 - master; rdown_until = now + FO_DOWN;
       rid[master] = next_rid; next_rid++;   /* the promoted replica's new replication id */
       printf("t=%d FAILOVER: server %d is master: holder %d term %d expires %d stored %d\n",
              now, master, M.holder, M.term, M.exp, M.stored)
#endif
#ifdef FAULT_RESTART
  /* the master restarts with what its persistence kept */
  :: faults == 0 && now <= FAULT_LAST ->
       faults++; fault_at = now; rdown_until = now + FO_DOWN;
       rid[master] = next_rid; next_rid++;   /* a restarted server's new replication id */
       if
       :: PERSIST == 0 -> clear_srv(master)
       :: PERSIST == 1 -> copy_srv(2, master)
       :: else -> skip
       fi;
       printf("t=%d RESTART of the master: holder %d term %d stored %d\n", now, M.holder, M.term, M.stored)
#endif
#ifdef FAULT_STEP
  :: faults == 0 && now <= FAULT_LAST ->
       faults++; fault_at = now; roff = roff + STEP;
       printf("t=%d the Redis clock steps forward to %d\n", now, RNOW)
#endif
  fi;
#ifdef FAULT_STEP_BACK
  /* the Redis clock (of both servers) steps forward by STEP, and later back by STEP: grants
   * made meanwhile carry terms from the future, and the ones after the step back follow
   * the stored term (stored + 1), ahead of TIME; independent of the one fault above.
   * To keep the search small the clock is STEP ahead from the start (init). */
  if
  :: skip
  :: stepped == 1 -> stepped = 2; roff = roff - STEP;
#if defined(FAULT_FAILOVER) && !defined(STEP_ANY_ORDER)
       /* assumption (STEP_ANY_ORDER drops it): what was granted while the clock ran ahead reached the replica (a
        * lost grant from the stepped clock is repeated once TIME gets there: no rule can
        * tell, see docs/protocol.md); the lost-write window is after the step back */
       copy_srv(master, 1 - master);
#endif
       printf("t=%d the Redis clock steps back to %d\n", now, RNOW)
  fi;
#endif
  expire()
}

/* how many daemons may schedule right now */
#if N >= 3
#define NSCHED ((SCHED(1) -> 1 : 0) + (SCHED(2) -> 1 : 0) + (SCHED(3) -> 1 : 0))
#else
#define NSCHED ((SCHED(1) -> 1 : 0) + (SCHED(2) -> 1 : 0))
#endif

#ifdef LIVE
/* maximal progress, for the liveness check: time does not pass while a live daemon has
 * something due or Redis has a request to serve (nothing paused, nothing lost or late) */
#define URGENT(n) (up[n] && (rq[n] != RQ_NONE || (waiting[n] && rp[n] != RP_NONE) \
                   || (!waiting[n] && URGENT_ATTEMPT(n))))
#if N >= 3
#define CAN_TICK (!URGENT(1) && !URGENT(2) && !URGENT(3))
#else
#define CAN_TICK (!URGENT(1) && !URGENT(2))
#endif
#else
#define CAN_TICK 1
#endif

/* Redis forgets an expired lease and an ended reservation (zeroed: no decision reads them) */
inline expire() {
  for (n : 0 .. 2) {
    if :: srv[n].holder != 0 && RNOW >= srv[n].exp ->
            srv[n].holder = 0; srv[n].inst = 0; srv[n].term = 0; srv[n].exp = 0
       :: else -> skip fi;
    if :: srv[n].res_for != 0 && RNOW >= srv[n].res_until ->
            srv[n].res_for = 0; srv[n].res_until = 0
       :: else -> skip fi
  }
}

/* a request is served (or lost, or made late) within the tick it was sent in */
#define SETTLED_N(n) (rq[n] == RQ_NONE || late[n])
#if N >= 3
#define SETTLED (SETTLED_N(1) && SETTLED_N(2) && SETTLED_N(3))
#else
#define SETTLED (SETTLED_N(1) && SETTLED_N(2))
#endif

bit started = 0;        /* time begins once init has started the daemons */
byte overlap = 0;       /* ticks in a row with two daemons that may schedule */
byte leaderless = 0;    /* LIVE: ticks in a row with none */
byte dead_res = 0;      /* LIVE: ticks in a row reserved for a dead node, with no leader */

active proctype Clock() {
  byte n;
end:  do
  :: atomic { started && now < T_MAX && CAN_TICK && SETTLED ->
       now++; printf("---- tick: t=%d\n", now);
       /* each local clock advances 0, 1 or 2 ticks, keeping within DRIFT of real time */
       for (n : 1 .. N) {
         if :: lag[n] < DRIFT -> lag[n]++ :: lag[n] > 0 -> lag[n]-- :: skip fi;
         if :: hb_left[n] > 0 -> hb_left[n]-- :: else -> skip fi
       }
       n = 0;
       between_ticks();
       overlap = (NSCHED >= 2 -> overlap + 1 : 0);
#ifdef PROP_OVERLAP
       assert(overlap <= OV_BOUND);
#endif
#ifdef LIVE
       leaderless = (NSCHED == 0 && !led -> leaderless + 1 : 0); led = 0;
       assert(leaderless <= L_BOUND);      /* a live node leads within L_BOUND ticks */
       /* a reservation for a node that is seen dead holds nobody up: a live node leads
        * within one poll (renew interval, plus the drift) */
       dead_res = (NSCHED == 0 && M.res_for != 0 && RNOW < M.res_until && !ALIVE(M.res_for)
                   -> dead_res + 1 : 0);
       assert(dead_res <= RENEW + DRIFT);
#endif
     }
  od
}

#ifdef PROP_OVERLAP
/* at no instant may two daemons schedule (checked in every reachable state), except
 * for the overlap a fault admits, which the Clock bounds in ticks */
active proctype Monitor() {
end:
  atomic { !(NSCHED <= 1 || (OV_BOUND > 0 && faults > 0)) ->
    assert(NSCHED <= 1 || (OV_BOUND > 0 && faults > 0)) }
}
#endif

init {
  byte n;
  atomic {
    rid[0] = 1; rid[1] = 2;
#ifdef FAULT_STEP_BACK
    stepped = 1; roff = STEP;
#endif
    for (n : 1 .. N) { up[n] = 1; fresh(n) }
    for (n : 1 .. N) { run Node(n) };
    started = 1
  }
}
