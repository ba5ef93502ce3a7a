/* redis.pml: the Redis servers' state and each Lua script as one atomic action on the
 * master's state, deciding exactly as the script in lua/ does (with the new design's
 * rules; the OLD_* switches bring back today's rules).
 *
 * Only the keys the protocol decides on are kept: the lease hash (holder, instance, term,
 * expiry; "holder == 0" or an expiry in the past both mean "no key", as PEXPIREAT makes
 * it), and the tenure hash (stored term, reservation).  The fenced key's value is not
 * kept: the property is about which writes are accepted.
 */
typedef Srv {
  byte holder;     /* lease: node id, 0 = no key */
  byte inst;       /* lease: instance id of the holding process */
  byte term;       /* lease: term of the tenure */
  byte exp;        /* lease: lease_expires_at (Redis clock, ticks) */
  byte stored;     /* tenure: highest term granted */
  byte res_for;    /* tenure: reserved_for (node id, 0 = none) */
  byte res_until;  /* tenure: reserved_until (Redis clock) */
  byte srid;       /* tenure: replication id of the server that granted the stored term
                      (0 = none recorded) */
}
Srv srv[3];        /* 0 and 1: the two servers; 2: the last fsynced copy on disk */
byte master = 0;   /* which of srv[0], srv[1] is the master; the other is its replica */
/* each server's own replication id (not data: it is not replicated or fsynced); a replica
 * promoted by a failover and a restarted server take a new one */
byte rid[2];
byte next_rid = 3;

byte now = 0;      /* real time */
byte roff = 0;     /* Redis clock = real time + roff (a forward step raises roff) */
#define RNOW (now + roff)
byte rdown_until = 0;          /* Redis unavailable (failover, restart) until then */
#define REDIS_UP (now >= rdown_until)

#define M srv[master]
#define LIVE_LEASE (M.holder != 0 && RNOW < M.exp)

/* heartbeats, abstracted: a running node's heartbeat is fresh; a crashed node's looks
 * alive for STALE ticks (3 heartbeat intervals); a node that stopped ("stopping") at once
 * not.  (request_handoff.lua, release.lua and acquire.lua ask this.) */
bool up[N + 1];
byte hb_left[N + 1];            /* ticks a crashed node still looks alive */
#define ALIVE(t) (up[t] || hb_left[t] > 0)

inline copy_srv(a, b) {
  srv[b].holder = srv[a].holder; srv[b].inst = srv[a].inst; srv[b].term = srv[a].term;
  srv[b].exp = srv[a].exp; srv[b].stored = srv[a].stored; srv[b].res_for = srv[a].res_for;
  srv[b].res_until = srv[a].res_until; srv[b].srid = srv[a].srid
}

inline clear_srv(b) {
  srv[b].holder = 0; srv[b].inst = 0; srv[b].term = 0; srv[b].exp = 0; srv[b].stored = 0;
  srv[b].res_for = 0; srv[b].res_until = 0; srv[b].srid = 0
}

/* ghost state for the properties: every term ever granted, the highest one */
bit used[256];
byte max_granted = 0;
#ifndef TERM_CAP
#define TERM_CAP 250     /* 2^53 scaled: acquire.lua refuses a term >= it (the model's terms
                            stay far below it unless an event's term is believed) */
#endif
#ifndef FORGED
#define FORGED (TERM_CAP - 1)  /* MUT_EVENT_FLOOR: the term a forged or foreign event
                            announces (anyone may publish on the channel) */
#endif

/* The term of a new tenure.  New design: max(stored + 1, highest seen + 1, Redis TIME);
 * SCALE term units per tick stand for the µs of a tick.  The failover epoch (faults
 * branch, acquire.lua): on a server whose replication id differs from the one recorded
 * with the stored term (a promoted replica, a restarted server), also at least
 * stored + JUMP, JUMP larger than the grants a lost-write window can hold
 * (MUT_NO_EPOCH removes it).  Old rule: max(stored, highest seen) + 1. */
inline new_term(t, hs) {
#ifdef OLD_TERM_RULE
  t = (M.stored > hs -> M.stored : hs) + 1;
#else
  t = (M.stored > hs -> M.stored : hs) + 1;
  t = (t > RNOW * SCALE -> t : RNOW * SCALE);
#ifndef MUT_NO_EPOCH
  if
  :: M.srid != 0 && M.srid != rid[master] && t < M.stored + JUMP -> t = M.stored + JUMP
  :: else -> skip
  fi;
#endif
#endif
}

/* reply of the lease scripts to node n */
#define RP_NONE 0
#define RP_RENEW 1
#define RP_ACQUIRE 2
#define RP_HELD 3
#define RP_LOST 4
#define RP_ERR 5         /* an error reply (acquire.lua: no term below 2^53 is left) */

/* acquire.lua: acquire-or-renew in one atomic step */
inline acquire_lua(n, i, hs, code, rterm, tmp) {
  if
  :: LIVE_LEASE && M.holder == n && M.inst == i ->      /* ours: renew */
       M.exp = RNOW + TTL; code = RP_RENEW; rterm = M.term
  :: LIVE_LEASE && !(M.holder == n && M.inst == i) ->   /* another's */
       code = RP_HELD; rterm = M.term
  :: else ->
       if
       :: (M.res_for != 0 && M.res_for != n && M.res_until > RNOW
#ifndef OLD_RESERVE
           && ALIVE(M.res_for)   /* new: a reservation whose target is dead ends early */
#endif
          ) -> code = RP_HELD; rterm = M.stored          /* reserved for another */
       :: else ->
          new_term(tmp, hs);
          if
          :: tmp >= TERM_CAP -> code = RP_ERR; rterm = 0   /* refused, nothing written */
          :: else ->
#ifdef PROP_TERMS
          assert(!used[tmp]);         /* no term granted to two tenures */
          assert(tmp > max_granted);        /* terms strictly increase */
#endif
          used[tmp] = 1;
          max_granted = (tmp > max_granted -> tmp : max_granted);
          M.holder = n; M.inst = i; M.term = tmp; M.exp = RNOW + TTL;
          M.stored = tmp; M.res_for = 0; M.res_until = 0; M.srid = rid[master];
          code = RP_ACQUIRE; rterm = tmp
          fi
       fi
  fi
}

/* renew.lua: the hot path; anything unexpected is "lost" (the caller falls back) */
inline renew_lua(n, i, code, rterm) {
  if
#ifdef MUT_RENEW_ANY_INSTANCE
  /* mutation: the instance id is not checked; a restarted process (same node id) renews
   * the old process's lease */
  :: LIVE_LEASE && M.holder == n ->
#else
  :: LIVE_LEASE && M.holder == n && M.inst == i ->
#endif
       M.exp = RNOW + TTL; code = RP_RENEW; rterm = M.term
  :: else -> code = RP_LOST
  fi
}

/* release.lua: only the holder (this instance, this term) releases; with a target the
 * lease is reserved for it for one TTL.  New: only if the target is alive. */
inline release_lua(n, i, want, target) {
  if
  :: LIVE_LEASE && M.holder == n && M.inst == i && M.term == want ->
       M.holder = 0;
       if
       :: (target != 0
#ifndef OLD_RESERVE
           && ALIVE(target)
#endif
          ) -> M.res_for = target; M.res_until = RNOW + TTL
       :: else -> skip                           /* released without reservation */
       fi
  :: else -> skip                                /* not_holder */
  fi
}

/* fence.lua: accept a write only from the live lease's tenure.  New: term AND instance.
 * Old: term only. */
#ifdef OLD_FENCE
#define FENCE_OK(t, i) (LIVE_LEASE && M.term == t)
#else
#define FENCE_OK(t, i) (LIVE_LEASE && M.term == t && M.inst == i)
#endif
