/*
 * job.pml — the job slot's state machine and lease (docs/PROTOCOL.md §6)
 * with the supervisor's recovery of dead workers and of a dead client.
 *
 * One client submits J jobs into S slots and collects their results;
 * W workers lease and run them. A worker may die after any step (at most
 * MAXCRASH random deaths); the supervisor may time a running job out or
 * act on a cancel request, by killing its worker (SIGKILL: the worker
 * takes no further step); the client may cancel one job and may die
 * itself (CLIENTDEATH). The supervisor recovers a dead worker, respawns it
 * under a new generation, and cleans up after a dead client.
 *
 * With -DSTARTFAIL=n, up to n of the supervisor's worker starts fail (the
 * worker stays down; the supervisor starts it again later, §6.2's start-up
 * state); with -DBROKEN as well, a worker whose start failed never starts
 * again. While no worker is up and a start has failed, the client's
 * submits are refused and the supervisor fails the queued jobs
 * (WSTART): no job waits for ever because no worker can start.
 * -DMUTANT_NO_FAILQUEUED leaves the latter out (a counterexample with
 * -DBROKEN: the queued job never ends).
 *
 * The rings are abstracted by the contract ring.pml checks: an enqueue
 * either happened or not (the party's record says "enqueued" after it,
 * until its next ring operation); a dequeued value stays in the party's
 * custody (recovery reports it) until the party releases it.
 */

#ifndef J
#define J 2
#endif
#ifndef S
#define S 1
#endif
#ifndef W
#define W 2
#endif
#ifndef RETRIES
#define RETRIES 1
#endif
#ifndef MAXCRASH
#define MAXCRASH 2
#endif
#ifndef CLIENTDEATH
#define CLIENTDEATH 1
#endif
#ifndef STARTFAIL
#define STARTFAIL 0
#endif
#ifdef BROKEN
#define RESTARTS 0
#else
#define RESTARTS 1
#endif

/* slot states */
#define FREE       0
#define FILLING    1
#define QUEUED     2
#define RUNNING    3
#define DONE       4
#define COLLECTING 5
#define DROPPED    6

/* result codes */
#define OK        1
#define CRASHED   2
#define TIMEDOUT  3
#define CANCELLED 4
#define WSTART    5   /* no worker could start */

/* flags */
#define F_TIMEOUT 1
#define F_CANCEL  2

/* owners: 0 none, 1 the client, 2 the supervisor, then workers by generation */
#define CLIENT 1
#define SUP    2
#define WOWNER(w, g) (3 + (w) + W * (g))

#define REF(s) ((s) + S * sseq[s])

/* guards over the slot table (S is 1 or 2) */
#if S > 2
#error "the guards below cover at most 2 slots"
#endif
#define ANY(cond0, cond1) ((cond0) || S > 1 && (cond1))
#define RUN_AT(i)    (sst[i] == RUNNING)
#define CANCEL_AT(i) (sst[i] == RUNNING && (sflags[i] & F_CANCEL) && !killreq[(sown[i] - 3) % W])
#define DROP_AT(i)   (sst[i] == QUEUED && sown[i] == 0)
#define LIVEW(o)     ((o) >= 3 && !wdead[((o) - 3) % W] && (o) == WOWNER(((o) - 3) % W, wgen[((o) - 3) % W]))
#define ORPHAN_AT(i) (sst[i] == DONE && !LIVEW(sown[i]))
#define QUEUED_AT(i) (sst[i] == QUEUED)
/* the pool's start-up state: no worker is up, and a start has failed */
#define FAILING      (wdead[0] && wdead[W-1] && (wfail[0] || wfail[W-1]))

/* slots */
byte sst[S]; byte sown[S]; byte sseq[S]; byte sflags[S];
byte sjob[S]; byte sattempts[S]; byte scode[S];

/* rings: the inqueue and the client's outqueue, 2·S cells each (§6) */
chan inq = [2*S] of { byte };
chan outq = [2*S] of { byte };

/* ring records: custody of a dequeued value, or the last enqueue */
#define R_IDLE 0
#define R_HELD 1      /* dequeued, not yet made the party's own */
#define R_ENQD 2      /* enqueue completed */
byte wph[W]; byte wref[W];
byte subph; byte subref; byte colph; byte colref;

/* parties */
bool wdead[W]; byte wgen[W]; bool killreq[W];
bool wfail[W]; byte startfails;   /* a worker whose last start failed stays down (wdead) */
bool cdead; bool cclean;
byte crashes; byte timeouts; byte cancels;

/* ghost: per job */
byte running[J]; byte terminal[J]; byte results[J]; byte rcode[J];
byte submitted; byte collected;

#define WCRASH \
	if \
	:: atomic { crashes < MAXCRASH -> crashes++; wdead[w] = true }; goto died \
	:: true \
	fi

#define CCRASH \
	if \
	:: atomic { CLIENTDEATH && !cdead -> cdead = true }; goto died \
	:: true \
	fi

/* A job ends: exactly once. */
inline terminate(s, code) {
	assert(terminal[sjob[s]] == 0);
	terminal[sjob[s]]++;
	scode[s] = code
}

/* ------------------------------------------------------------------ */

proctype worker(byte w)
{
	byte ref, s, q, me;

start:
	me = WOWNER(w, wgen[w]);
end_w:
	do
	:: atomic { inq?ref -> wph[w] = R_HELD; wref[w] = ref };
		WCRASH;
		s = ref % S; q = ref / S;
		if
		:: atomic {
			sseq[s] == q && sst[s] == QUEUED ->
			/* the lease */
			sst[s] = RUNNING; sown[s] = me;
			running[sjob[s]]++; assert(running[sjob[s]] == 1)
		   };
job_lease:
			WCRASH;
			wph[w] = R_IDLE;          /* custody is now the lease */
job_run:
			WCRASH;
			scode[s] = OK;            /* result written; still Running */
job_result:
			WCRASH;
			atomic {
				assert(sst[s] == RUNNING && sown[s] == me);
				running[sjob[s]]--;
				sst[s] = DONE; terminate(s, OK)
			};
job_done:
			WCRASH;
			atomic { outq!ref; wph[w] = R_ENQD; wref[w] = ref };
			WCRASH
		:: atomic { sseq[s] == q && sst[s] == DROPPED -> sst[s] = FREE; sown[s] = 0; wph[w] = R_IDLE }
		:: atomic { else -> wph[w] = R_IDLE }    /* stale */
		fi
	od unless {
		killreq[w] && !wdead[w] -> wdead[w] = true   /* SIGKILL */
	};
died:
	/* exited; wait for the supervisor to recover and respawn the slot */
end_dead:
	!wdead[w];
	goto start
}

/* ------------------------------------------------------------------ */

proctype client()
{
	byte ref, s, q, j;

end_c:
	do
	:: atomic { submitted < J && FAILING ->
		/* the submit is refused at once: the job's one result */
		terminal[submitted]++; results[submitted]++; rcode[submitted] = WSTART;
		submitted++; collected++ }
	:: submitted < J && ANY(sst[0] == FREE, sst[S-1] == FREE) ->
		/* job.fill: allocate a slot by CAS over the table (the client
		 * waits while every slot is in use) */
		atomic {
			s = 0;
			do
			:: s < S && sst[s] != FREE -> s++
			:: s < S && sst[s] == FREE -> break
			od;
			sst[s] = FILLING; sown[s] = CLIENT; sseq[s]++;
			sjob[s] = submitted; sattempts[s] = 0; sflags[s] = 0; scode[s] = 0;
			submitted++
		};
job_fill:
		CCRASH;
		atomic { sst[s] = QUEUED };
job_queued:
		CCRASH;
		atomic { inq!REF(s); subph = R_ENQD; subref = REF(s) };
		CCRASH;
		atomic { if :: sst[s] == QUEUED && sown[s] == CLIENT -> sown[s] = 0 :: else fi };
		CCRASH
	:: collected < submitted ->
		atomic { outq?ref -> colph = R_HELD; colref = ref };
		CCRASH;
		s = ref % S; q = ref / S;
		if
		:: atomic { sseq[s] == q && sst[s] == DONE -> sst[s] = COLLECTING; sown[s] = CLIENT };
job_collect:
			CCRASH;
			atomic {
				j = sjob[s];
				assert(results[j] == 0);
				results[j]++; rcode[j] = scode[s];
				sst[s] = FREE; sown[s] = 0;
				collected++;
				colph = R_IDLE
			}
		:: atomic { else -> colph = R_IDLE }   /* a duplicate or stale reference */
		fi
	:: cancels == 0 ->
		/* cancel one job: a queued one ends at once, a running one is
		 * flagged for the supervisor */
		atomic {
			cancels++;
			s = 0;
			do
			:: s < S && !(sst[s] == QUEUED || sst[s] == RUNNING) -> s++
			:: s < S && sst[s] == QUEUED ->
				sst[s] = DONE; sown[s] = CLIENT; terminate(s, CANCELLED); break
			:: s < S && sst[s] == RUNNING -> sflags[s] = sflags[s] | F_CANCEL; s = S; break
			:: s == S -> break
			od
		};
		if
		:: s < S ->
			CCRASH;
			atomic { outq!REF(s); subph = R_ENQD; subref = REF(s) }
		:: else
		fi
	od;
died:
	skip
}

/* ------------------------------------------------------------------ */

/* The supervisor never blocks on a ring (§6.4): what it cannot enqueue
 * at once waits in its own list and is retried. */
chan supin = [2*S] of { byte };
chan supout = [2*S] of { byte };

/* The supervisor publishes a result, or frees the slot if the client is gone. */
inline publish(s) {
	if
	:: !cdead -> assert(nfull(supout)); supout!REF(s)
	:: else -> sst[s] = FREE; sown[s] = 0
	fi
}

/* The supervisor starts worker w under a new generation; the start may
 * fail (STARTFAIL), and the worker then stays down until a later start. */
inline start(w) {
	killreq[w] = false;
	if
	:: startfails < STARTFAIL -> startfails++; wfail[w] = true
	:: true -> wfail[w] = false; wgen[w]++; wdead[w] = false
	fi
}

proctype supervisor()
{
	byte w, s, ref, own;

end_sup:
	do
	/* §6.2: a dead worker */
	:: atomic { wdead[0] && !wfail[0] -> w = 0 } ;
		goto recover
#if W > 1
	:: atomic { wdead[1] && !wfail[1] -> w = 1 };
		goto recover
#endif
	/* a start that failed is tried again, after a back-off */
	:: atomic { RESTARTS && wfail[0] -> start(0) }
#if W > 1
	:: atomic { RESTARTS && wfail[1] -> start(1) }
#endif
#ifndef MUTANT_NO_FAILQUEUED
	/* no worker is up and a start failed: the queued jobs end (WSTART) */
	:: atomic {
		FAILING && ANY(QUEUED_AT(0), QUEUED_AT(S-1)) ->
		s = 0;
		do
		:: s < S && sst[s] != QUEUED -> s++
		:: s < S && sst[s] == QUEUED -> break
		od;
		sst[s] = DONE; sown[s] = SUP; terminate(s, WSTART); publish(s)
	   }
#endif
	/* a job runs past its deadline: flag it, kill its worker */
	:: atomic {
		timeouts == 0 && ANY(RUN_AT(0), RUN_AT(S-1)) ->
		s = 0;
		do
		:: s < S && sst[s] != RUNNING -> s++
		:: s < S && sst[s] == RUNNING -> break
		od;
		timeouts++;
		sflags[s] = sflags[s] | F_TIMEOUT;
		killreq[(sown[s] - 3) % W] = true
	   }
	/* a cancel request for a running job: kill its worker */
	:: atomic {
		ANY(CANCEL_AT(0), CANCEL_AT(S-1)) ->
		s = 0;
		do
		:: s < S && !CANCEL_AT(s) -> s++
		:: s < S && CANCEL_AT(s) -> break
		od;
		killreq[(sown[s] - 3) % W] = true
	   }
	/* every tick: what could not be enqueued before */
	:: atomic { nempty(supin) && nfull(inq) -> supin?ref; inq!ref }
	:: atomic { nempty(supout) && (nfull(outq) || cdead) -> supout?ref;
		if :: !cdead -> outq!ref :: else fi }
	/* §6.3: a dead client */
	:: atomic { cdead && !cclean ->
		/* its ring records: the submitter's last enqueue, the collector's custody */
		s = 0;
		do
		:: s < S ->
			if
			:: sown[s] == CLIENT && (sst[s] == FILLING || sst[s] == COLLECTING) -> sst[s] = FREE; sown[s] = 0
			:: sown[s] == CLIENT && sst[s] == QUEUED ->
				if
				:: subph == R_ENQD && subref == REF(s) -> sown[s] = 0
				:: else -> sst[s] = FREE; sown[s] = 0
				fi
			:: colph == R_HELD && colref == REF(s) && sst[s] == DONE -> sst[s] = FREE; sown[s] = 0
			:: else
			fi;
			s++
		:: else -> break
		od;
		colph = R_IDLE; subph = R_IDLE;
		cclean = true
	   }
	/* then, every tick, until nothing refers to the client */
	:: atomic { cclean && nempty(outq) -> outq?ref;
		s = ref % S;
		if :: sseq[s] == ref / S && sst[s] == DONE -> sst[s] = FREE; sown[s] = 0 :: else fi }
	:: atomic { cclean && ANY(DROP_AT(0), DROP_AT(S-1)) -> s = 0;
		do
		:: s < S && !DROP_AT(s) -> s++
		:: s < S && DROP_AT(s) -> sst[s] = DROPPED; break
		od }
	/* ... and finished jobs that no live worker will publish */
	:: atomic { cclean && ANY(ORPHAN_AT(0), ORPHAN_AT(S-1)) -> s = 0;
		do
		:: s < S && !ORPHAN_AT(s) -> s++
		:: s < S && ORPHAN_AT(s) -> sst[s] = FREE; sown[s] = 0; break
		od }
	od;

recover:
	atomic {
		own = WOWNER(w, wgen[w]);
		/* the worker's ring record: a reference it had taken, not leased */
		if
		:: wph[w] == R_HELD && sst[wref[w] % S] == QUEUED && sseq[wref[w] % S] == wref[w] / S ->
			assert(nfull(supin)); supin!wref[w]
#ifndef BUG_DROPPED_ORPHAN
		:: wph[w] == R_HELD && sst[wref[w] % S] == DROPPED && sseq[wref[w] % S] == wref[w] / S ->
			/* its client is gone: the worker was to free it (found by this model) */
			sst[wref[w] % S] = FREE; sown[wref[w] % S] = 0
#endif
		:: else
		fi;
		wph[w] = R_IDLE;
		/* the slots it owned */
		s = 0;
		do
		:: s < S ->
			if
			:: sown[s] == own && sst[s] == RUNNING ->
				running[sjob[s]]--;
				sattempts[s]++;
				if
				:: sflags[s] & F_TIMEOUT -> sst[s] = DONE; sown[s] = SUP; terminate(s, TIMEDOUT); publish(s)
				:: else -> if
					:: sflags[s] & F_CANCEL -> sst[s] = DONE; sown[s] = SUP; terminate(s, CANCELLED); publish(s)
					:: else -> if
						:: sattempts[s] <= RETRIES -> sst[s] = QUEUED; sown[s] = 0; sflags[s] = 0;
							assert(nfull(supin)); supin!REF(s)
						:: else -> sst[s] = DONE; sown[s] = SUP; terminate(s, CRASHED); publish(s)
						fi
					fi
				fi
			:: sown[s] == own && sst[s] == DONE -> sown[s] = SUP; publish(s)   /* maybe unpublished: again */
			:: else
			fi;
			s++
		:: else -> break
		od;
		/* respawn under a new generation */
		start(w)
	};
	goto end_sup
}

init {
	byte i, j;
	atomic {
		i = 0;
		do
		:: i < W -> run worker(i); i++
		:: else -> break
		od;
		run client();
		run supervisor()
	};
	timeout;
	atomic {
		/* the pool is back at full size (unless BROKEN keeps a worker
		 * down), nothing runs */
		i = 0;
		do
		:: i < W -> assert(!wdead[i] || !RESTARTS && wfail[i]); i++
		:: else -> break
		od;
		j = 0;
		do
		:: j < J -> assert(running[j] == 0 && terminal[j] <= 1 && results[j] <= 1); j++
		:: else -> break
		od;
		if
		:: !cdead ->
			/* every job ended exactly once and its result was collected once */
			assert(submitted == J && collected == J);
			j = 0;
			do
			:: j < J -> assert(terminal[j] == 1 && results[j] == 1 && rcode[j] != 0); j++
			:: else -> break
			od
		:: else
		fi;
		/* no slot leaked (a dead client's dropped job waits in the
		 * inqueue for a worker to free it: with BROKEN, none may come;
		 * nothing waits for that job) */
		i = 0;
		do
		:: i < S -> assert(sst[i] == FREE || !RESTARTS && sst[i] == DROPPED && cdead); i++
		:: else -> break
		od
	}
}
