/* watchdog.pml: the leader-only child under its watchdog (coordinator/child/watchdog.py) and the
 * daemon's side (coordinator/child/child.py, the on_lease_deadline hook), for one node.
 *
 * The daemon tells the watchdog, over one ordered socket, {"deadline": d | null},
 * {"start": {term, deadline}} and {"stop": true}; it may be frozen between any two sends
 * (its actions are never forced to happen).  The watchdog acts on its own timers:
 * SIGTERM at deadline - GRACE, SIGKILL at the deadline; a stop: SIGTERM now, SIGKILL
 * after GRACE but never past the deadline; a start while the old child is still on its
 * way out is queued.  Time may not pass while a watchdog signal is due (the watchdog is
 * not frozen; with WD_FREEZE it may be, which no design can survive: see README).
 *
 * Tenures: at most two (terms 1, 2).  A tenure ends at its deadline (the lease lapses
 * MARGIN later: lease.pml shows the local deadline comes first) or early (a handover: the
 * daemon stops leading, sends null and stop, waits for the child, at most GRACE + 1, and
 * releases: the lease then ends at once).
 *
 * Properties: a child is never started for a tenure that ended (PROP_START); a child runs
 * only while its tenure's lease is live (PROP_RUN).  OLD_RESTORE: today's watchdog, whose
 * queued start restores the deadline it carried.
 */
#ifndef TTL
#define TTL 6
#endif
#ifndef MARGIN
#define MARGIN 1
#endif
#ifndef GRACE
#define GRACE 2          /* COORDINATOR_CHILD_GRACE < TTL - renew interval */
#endif
#ifndef T_MAX
#define T_MAX 14
#endif
#define NONE 255         /* a deadline of null */

mtype = { m_deadline, m_start, m_stop };
chan ctl = [3] of { mtype, byte, byte };   /* kind, term, deadline */

byte now = 0;

/* the daemon */
byte lead = 0;           /* term it leads in, 0 = none */
byte dl = NONE;          /* its local deadline */
byte terms = 0;          /* tenures so far */
bit start_sent = 0;      /* this tenure's child was asked for */
bit stop_due = 0;        /* leadership ended early: stop still to send, then release */
byte stop_at = 0;
byte releasing = 0;      /* term to release once its child is gone (0 = none) */

/* the tenures' truth */
bit ended[3];            /* the daemon stopped leading in this term */
bit told_end[3];         /* the watchdog has read that (null deadline or stop) */
byte lease_end[3];       /* the lease of that term is live until then */

/* the watchdog */
byte wd_dl = NONE;       /* Watchdog._deadline */
byte ch_term = 0;        /* the child's term, 0 = no child */
byte ch_dl = NONE;       /* Watch.deadline */
bit ch_stop = 0;         /* Watch.stop_requested */
byte ch_termed = NONE;   /* Watch.term_sent_at */
byte pend_term = 0;      /* the queued start */
byte pend_dl = NONE;

/* Watchdog._spawn: start only with enough of the lease left (startable) */
inline spawn(t, d) {
#ifdef OLD_RESTORE
  wd_dl = d;                                     /* the start's deadline wins */
#endif
  if
  :: wd_dl != NONE && now + GRACE < wd_dl ->
#ifdef PROP_START
       assert(!told_end[t]);   /* never for a tenure it was told had ended */
#endif
       ch_term = t; ch_dl = wd_dl; ch_stop = 0; ch_termed = NONE;
       printf("t=%d watchdog starts a child for term %d (deadline %d)\n", now, t, ch_dl)
  :: else -> printf("t=%d watchdog refuses to start term %d\n", now, t)
  fi
}

/* the signal the watchdog owes now (watchdog.due): SIGTERM, then SIGKILL */
#define TERM_DUE (ch_term != 0 && ch_termed == NONE && (ch_stop || ch_dl == NONE || now + GRACE >= ch_dl))
#define KILL_AT ((ch_termed + GRACE < ch_dl) -> ch_termed + GRACE : ch_dl)
#define KILL_DUE (ch_term != 0 && ch_termed != NONE && now >= KILL_AT)

active proctype Daemon() {
end:
  do
  /* a new tenure (state.StartLeading): on_lease_deadline, then _lead asks for a child */
  :: atomic { lead == 0 && releasing == 0 && !stop_due && terms < 2 && len(ctl) < 2 ->
       terms++; lead = terms; dl = now + TTL - MARGIN; lease_end[lead] = dl + MARGIN;
       start_sent = 0; ctl!m_deadline(lead, dl);
       printf("t=%d daemon leads term %d, deadline %d\n", now, lead, dl) }
  :: atomic { lead != 0 && !start_sent && now + GRACE < dl && len(ctl) < 2 ->
       start_sent = 1; ctl!m_start(lead, dl) }
  /* a renewal: the deadline moves (the lease's expiry with it) */
  :: atomic { lead != 0 && now < dl && now + TTL - MARGIN > dl && len(ctl) < 2 ->
       dl = now + TTL - MARGIN; lease_end[lead] = dl + MARGIN; ctl!m_deadline(lead, dl) }
  /* the deadline passes (the timer): leadership ends, null then stop */
  :: atomic { lead != 0 && now >= dl && len(ctl) <= 1 ->
       ended[lead] = 1; ctl!m_deadline(lead, NONE); ctl!m_stop(lead, 0);
       printf("t=%d daemon: deadline passed, term %d ends\n", now, lead); lead = 0; dl = NONE }
  /* an early end (a handover): Released, so on_lease_deadline(None) first... */
  :: atomic { lead != 0 && now < dl && len(ctl) < 2 ->
       ended[lead] = 1; ctl!m_deadline(lead, NONE); stop_due = 1; releasing = lead;
       printf("t=%d daemon hands over: term %d ends\n", now, lead); lead = 0; dl = NONE }
  /* ...then, perhaps after a freeze, the cancelled _lead's stop */
  :: atomic { stop_due && len(ctl) < 2 -> stop_due = 0; stop_at = now; ctl!m_stop(releasing, 0) }
  /* release.lua once the child is gone (_wait_gone: at most GRACE + 1): the lease ends */
  :: atomic { (releasing != 0 && !stop_due && ((ch_term != releasing && pend_term != releasing)
              || now >= stop_at + GRACE + 1)) ->
       lease_end[releasing] = now; printf("t=%d daemon releases term %d\n", now, releasing);
       releasing = 0 }
  od
}

active proctype Watchdog() {
  mtype kind; byte t, d;
end:
  do
  :: atomic { ctl?kind(t, d) ->
       if
       :: kind == m_deadline ->
            wd_dl = d;
            if :: d == NONE -> told_end[t] = 1 :: else -> skip fi;
            if                                   /* watchdog.with_deadline */
            :: ch_term != 0 && !ch_stop && ch_termed == NONE ->
                 if :: d == NONE -> ch_stop = 1 :: else -> ch_dl = d fi
            :: else -> skip
            fi;
#ifndef OLD_RESTORE
            if :: d == NONE -> pend_term = 0; pend_dl = NONE :: else -> skip fi  /* cancelled */
#endif
       :: kind == m_start ->
            if
            :: ch_term == 0 -> spawn(t, d)
            :: else -> pend_term = t; pend_dl = d      /* after the old child */
            fi
       :: kind == m_stop -> told_end[t] = 1; pend_term = 0; pend_dl = NONE; ch_stop = (ch_term != 0)
       fi;
       t = 0; d = 0 }
  :: atomic { TERM_DUE -> ch_termed = now; printf("t=%d watchdog: SIGTERM term %d\n", now, ch_term) }
  :: atomic { KILL_DUE -> printf("t=%d watchdog: SIGKILL term %d\n", now, ch_term);
       ch_term = 0; ch_dl = NONE; ch_termed = NONE; ch_stop = 0;
       if :: pend_term != 0 -> t = pend_term; d = pend_dl; pend_term = 0; pend_dl = NONE; spawn(t, d)
          :: else -> skip fi; t = 0; d = 0 }
  /* the child exits by itself, or on SIGTERM (watchdog._reap, then the queued start) */
  :: atomic { ch_term != 0 -> printf("t=%d the child of term %d exits\n", now, ch_term);
       ch_term = 0; ch_dl = NONE; ch_termed = NONE; ch_stop = 0;
       if :: pend_term != 0 -> t = pend_term; d = pend_dl; pend_term = 0; pend_dl = NONE; spawn(t, d)
          :: else -> skip fi; t = 0; d = 0 }
  od
}

active proctype Clock() {
end:
  do
  :: atomic { (now < T_MAX
#ifndef WD_FREEZE
       && !TERM_DUE && !KILL_DUE && len(ctl) == 0   /* it reads at once, signals on time */
#endif
       ) -> now++ }
  od
}

#ifdef PROP_RUN
/* a child runs only while its tenure's lease is live */
active proctype Monitor() {
end:
  atomic { ch_term != 0 && now >= lease_end[ch_term] -> assert(false) }
}
#endif
