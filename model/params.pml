/* params.pml: the bounds and the switches, shared by every model file.
 *
 * Time is counted in ticks. One tick is the unit of every duration below; the ratios
 * follow the product's rules (renew interval <= TTL/3, margin = 5 % of the TTL rounded up
 * to one tick, child grace < TTL - renew interval).  Every number can be overridden with
 * spin -DNAME=value.
 */
#ifndef N
#define N 2              /* daemons (nodes 1..N; 0 means "nobody"); 3 for handovers */
#endif
#ifndef TTL
#define TTL 4            /* COORDINATOR_LEASE_TTL */
#endif
#ifndef RENEW
#define RENEW 1          /* COORDINATOR_RENEW_INTERVAL (<= TTL/3) */
#endif
#ifndef MARGIN
#define MARGIN 1         /* state.Timing.safety_margin */
#endif
#ifndef DRIFT
#define DRIFT 1          /* bound on |local elapsed - real elapsed| over any window */
#endif
#ifndef OP_TIMEOUT
#define OP_TIMEOUT RENEW /* daemon._op_timeout = min(renew interval, 5 s) */
#endif
#ifndef THRESH
#define THRESH 2         /* COORDINATOR_RENEW_FAILURE_THRESHOLD */
#endif
#ifndef STALE
#define STALE 3          /* a crashed node's heartbeat looks alive this long (3 intervals) */
#endif
#ifndef T_MAX
#define T_MAX 8          /* real time stops here: every run is finite */
#endif
#ifndef SCALE
#define SCALE 4          /* Redis TIME in term units per tick: a tick is SCALE ms */
#endif
#ifndef MAX_CRASH
#define MAX_CRASH 0      /* node crashes (each restart gets a new instance id) */
#endif
#ifndef MAX_HO
#define MAX_HO 1         /* releases (with or without a handover target) */
#endif
#ifndef FO_DOWN
#define FO_DOWN 1        /* ticks a failover or a restart leaves Redis unavailable */
#endif
#ifndef STEP
#define STEP 3           /* size of the Redis clock's forward step (FAULT_STEP) */
#endif
#ifndef PERSIST
#define PERSIST 1        /* FAULT_RESTART: 0 none (restart empty), 1 appendfsync everysec
                            (loses what was not yet fsynced), 2 appendfsync always */
#endif
#ifndef MAX_LATE
#define MAX_LATE 1       /* requests delayed past their daemon's timeout */
#endif
#ifndef FAULT_LAST
#define FAULT_LAST (T_MAX - 2) /* the last tick a Redis fault may strike before */
#endif
#ifndef JUMP
#define JUMP 16          /* the failover epoch's jump (> the grants a lost-write window holds
                            within the horizon) */
#endif
#ifndef OV_BOUND
#define OV_BOUND 0       /* ticks of two-scheduler overlap admitted (0: none at all) */
#endif
#ifndef L_BOUND
#define L_BOUND 6        /* LIVE: ticks without a leader admitted while a node is live */
#endif
