/*
 * ring.pml — the robust MPMC ring of docs/PROTOCOL.md §2–§4, with crashes.
 *
 * NP producers each enqueue K values (in batches of up to B), NC consumers
 * dequeue (batches of up to B) until the checker finds the system quiet.
 * Any producer or consumer may die after any step that writes its record
 * or a cell (at most MAXCRASH deaths in all; a death right after moving
 * head or tail, or after a wake, is left out: others move head and tail
 * by helping, and recovery wakes every sleeper); the supervisor then runs
 * Recover for it, and Recover itself may be interrupted and run again
 * (at most MAXRI times). Waiting is the futex protocol of §4: a sleeper
 * bit, a sequence word, a re-check, a wait for the word to move; a
 * consumer may first spin with its spin bit set, and a producer skips the
 * wake while any spin bit is set: a consumer that clears its spin bit
 * then re-checks the ring and wakes the sleepers if values are left
 * ("pass on"). A consumer may also stop after spinning, taking nothing
 * more (a client's thread that polled for its result and left; the
 * other consumer plays the client's collector).
 *
 * Labels named like crash points (ring_enq_intent ~ "ring.enq.intent")
 * mark the crash transition after that step; a test checks that they,
 * docs/PROTOCOL.md and internal/crashpoint agree.
 *
 * Mutants (for the test that the model is not vacuous):
 *   -DMUTANT_NO_PENDING  the producer does not announce its operation
 *   -DMUTANT_NO_OWNER    the producer publishes without claiming first
 *   -DMUTANT_NO_PASSON   a consumer clears its spin bit without the re-check
 *
 * Options: -DSTOPS lets one consumer stop after its spin (see STOP);
 * -DNOSPIN compiles the spin layer out, leaving the model as it was
 * before it, state for state (check.sh requires the old state count).
 */

#ifndef CAP
#define CAP 2
#endif
#ifndef NP
#define NP 2
#endif
#ifndef NC
#define NC 2
#endif
#ifndef K
#define K 2
#endif
#ifndef B
#define B 2
#endif
#ifndef MAXCRASH
#define MAXCRASH 2
#endif
#ifndef MAXRI
#define MAXRI 1
#endif
/* CRASHSET: a bit per party (producers 0..NP-1, then consumers) that may
 * die. Every run with at most MAXCRASH deaths has a set of dead parties;
 * running every set of MAXCRASH parties covers them all, and each such
 * run's state space is a fraction of the all-parties one (check.sh uses
 * this to check 2 producers x 2 consumers exhaustively in 24 GiB). */
#ifndef CRASHSET
#define CRASHSET 255
#endif
/* CRASHFIRST: if defined, the first death must be that party's (later
 * ones may be anyone's in CRASHSET). With two producers that may both
 * die, runs where P1 dies first mirror runs where P0 does. */
/* CRASHPHASES: with CRASHFIRST, a bit per pending phase (below) in which
 * that first death may happen; runs with complementary masks together
 * cover every run, each with a part of the state space. */
#ifndef CRASHPHASES
#define CRASHPHASES 255
#endif
#ifdef CRASHFIRST
#define FIRSTOK (crashes > 0 || me == CRASHFIRST && ((CRASHPHASES >> ph[me]) & 1))
#else
#define FIRSTOK true
#endif

#define NPART (NP+NC)
#define NV (NP*K)

/* cell states */
#define EMPTY   0
#define CLAIMED 1
#define FULL    2
#define TAKEN   3
#define SKIP    4

/* pending phases; op is implied by the party's role */
#define IDLE      0
#define CLAIMING  1
#define CLAIMEDP  2
#define ENQUEUED  3
#define ABORTING  4
#define HOLD      5
#define DELIVERED 6
#define RECLAIM   7

/* the ring */
byte cst[CAP]; byte clap[CAP]; byte cpl[CAP];
byte head; byte tail;
/* The futex words of §4, abstracted: bit p of a kick mask is set when the
 * word has moved since party p read it (an unbounded counter would give
 * every interleaving its own state). */
byte nekick; byte nfkick;
byte nesleep; byte nfsleep;        /* sleeper bitmasks, a bit per party */
byte nespin;                       /* spinning consumers, a bit per party */
byte gone;                         /* consumers that stopped after spinning */

/* the party records: pending word (phase, n, m, mask), ticket, values */
byte ph[NPART]; byte pn[NPART]; byte pm[NPART]; byte pmask[NPART];
byte ptk[NPART]; byte pv[NPART*B];

/* who lives; recovery's bookkeeping */
bool dead[NPART]; bool recd[NPART];
byte crashes; byte rints;
byte finished;                     /* producers that enqueued everything */
byte livec = NC;                   /* consumers alive */

/* ghost state: the fate of each value (index = value, 1..NV) */
byte pub[NV+1];      /* times published into a cell */
byte claimedv[NV+1]; /* a cell was claimed for it */
byte deq[NV+1];      /* times a dequeue returned it */
byte notenq[NV+1]; byte undeliv[NV+1]; byte maybe[NV+1]; byte enqd[NV+1];
byte swept;          /* cells the safety-net sweep had to free */

#define LAP(t)  ((t) / CAP)
#define IDX(t)  ((t) % CAP)
#define OWNER(p) ((p) + 1)

/* A crash transition: the party dies here (its process exits). */
#define CRASH \
	if \
	:: atomic { crashes < MAXCRASH && ((CRASHSET >> me) & 1) && FIRSTOK -> crashes++; dead[me] = true; \
		if :: me >= NP -> livec-- :: else fi }; goto died \
	:: true \
	fi

/* The supervisor's recovery may be cut short and started again. */
#define RINT \
	if \
	:: atomic { rints < MAXRI -> rints++ }; goto again \
	:: true \
	fi

/* A producer reads the spin mask, then the sleepers (reading both at
 * once is the same: a skip is a skip at the first read or the second). */
inline wake_ne() { if :: nesleep != 0 && nespin == 0 -> nekick = 255 :: else fi }
inline wake_nf() { if :: nfsleep != 0 -> nfkick = 255 :: else fi }

inline advance_head(to) { atomic { if :: head < to -> head = to :: else fi } }
inline advance_tail(to) { atomic { if :: tail < to -> tail = to :: else fi } }

/* ------------------------------------------------------------------ */

proctype producer(byte me)
{
	byte k = 0;          /* values enqueued so far */
	byte h, n, m, i, st, lp;
	short d;
	bool sleeping = false;

	do
	:: k == K -> break
	:: else ->
retry:
		h = head;
		atomic { st = cst[IDX(h)]; lp = clap[IDX(h)] }
		d = lp - LAP(h);
		if
		:: d == 0 && st == EMPTY -> skip
		:: (d > 0 || d == 0 && st != EMPTY) ->
			atomic { if :: head == h -> head = h + 1 :: else fi }
			goto retry
		:: d == -1 && st != EMPTY ->
			/* full: sleep on not-full (§4) */
			if
			:: sleeping ->
end_full:		if
				:: nfkick & (1 << me)
				:: livec == 0 -> goto out  /* no consumer left: give up */
				fi;
				nfsleep = nfsleep & ~(1 << me);
				sleeping = false
			:: else ->
				nfsleep = nfsleep | (1 << me);
				nfkick = nfkick & ~(1 << me);   /* read the word */
				sleeping = true
			fi;
			goto retry
		:: else -> assert(false) /* corrupt */
		fi;
		if
		:: sleeping -> nfsleep = nfsleep & ~(1 << me); sleeping = false
		:: else
		fi;
		n = (K - k < B -> K - k : B);

		/* step intent: end the last custody, then ticket and values, then the pending word */
		ph[me] = IDLE;
		CRASH;
		atomic {
			ptk[me] = h;
			i = 0;
			do
			:: i < n -> pv[me*B + i] = me*K + k + i + 1; i++
			:: else -> break
			od;
#ifndef MUTANT_NO_PENDING
			ph[me] = CLAIMING; pn[me] = n; pm[me] = 0; pmask[me] = 0
#else
			skip
#endif
		};
ring_enq_intent:
		CRASH;

		/* step claim */
		m = 0;
		do
		:: m < n ->
			if
			:: atomic {
				cst[IDX(h+m)] == EMPTY && clap[IDX(h+m)] == LAP(h+m) ->
#ifndef MUTANT_NO_OWNER
				cst[IDX(h+m)] = CLAIMED; cpl[IDX(h+m)] = OWNER(me);
#else
				/* the mutant publishes in the same step, without an owner */
				cst[IDX(h+m)] = FULL; cpl[IDX(h+m)] = me*K + k + m + 1;
				pub[me*K + k + m + 1]++;
#endif
				claimedv[me*K + k + m + 1] = 1;
				m++
			   };
ring_enq_claim:
			   CRASH
			:: else -> break
			fi
		:: else -> break
		od;
		if
		:: m == 0 -> ph[me] = IDLE; goto retry
		:: else
		fi;
		advance_head(h + m);

		/* step claimed */
		atomic { ph[me] = CLAIMEDP; pm[me] = m };
ring_enq_claimed:
		CRASH;

		/* step publish: only the owner writes a claimed cell */
		i = 0;
		do
		:: i < m ->
#ifndef MUTANT_NO_OWNER
			atomic {
				cst[IDX(h+i)] = FULL; cpl[IDX(h+i)] = me*K + k + i + 1;
				pub[me*K + k + i + 1]++
			};
#endif
			i++;
ring_enq_publish:
			CRASH
		:: else -> break
		od;

		/* step done */
		ph[me] = ENQUEUED;
ring_enq_done:
		CRASH;
		wake_ne();
		k = k + m
	od;
	finished++;
	goto out;
died:
	skip;
out:
	skip
}

/* ------------------------------------------------------------------ */

/* A consumer ends its spin: clears its bit, then re-checks the ring as
 * Ring.canDequeue does and wakes the sleepers if it is not empty (the
 * wakes producers skipped while the bit was set). Uses t, st, lp, d. */
#ifdef MUTANT_NO_PASSON
#define ENDSPIN nespin = nespin & ~(1 << me); spinning = false
#else
#define ENDSPIN \
	nespin = nespin & ~(1 << me); spinning = false; \
	t = tail; \
	atomic { st = cst[IDX(t)]; lp = clap[IDX(t)] }; \
	d = lp - LAP(t); \
	if \
	:: !((d == 0 && (st == EMPTY || st == CLAIMED)) || d == -1) -> wake_ne() \
	:: else \
	fi; \
	atomic { t = 0; st = 0; lp = 0; d = 0 }   /* dead now: fewer states */
#endif

/* -DSTOPS (needs NC > 1): after its spin one consumer may stop for good
 * instead of sleeping, taking nothing more — a client's thread that
 * polled for its own result, and left; the other consumer plays the
 * client's collector, which sleeps on the ring. */
#ifdef STOPS
#define STOP atomic { gone++; livec-- }; goto stopped
#endif

proctype consumer(byte me)
{
	byte t, n, m, i, st, lp, v;
	byte lv[B];
	short d;
	bool sleeping = false;
	bool spinning = false;
	bool slept = false;   /* this wait has slept: it spins no more */

end_top:
	do
	:: true ->
retry:
		t = tail;
		atomic { st = cst[IDX(t)]; lp = clap[IDX(t)]; v = cpl[IDX(t)] };
		d = lp - LAP(t);
		if
		:: d == 0 && st == FULL -> skip
		:: d == 0 && st == SKIP ->
			/* a dead producer's claim turned into a skip: step over it */
			if
			:: atomic { cst[IDX(t)] == SKIP && clap[IDX(t)] == LAP(t) ->
				cst[IDX(t)] = EMPTY; clap[IDX(t)] = LAP(t) + 1; cpl[IDX(t)] = 0 };
				CRASH;
				atomic { if :: tail == t -> tail = t + 1 :: else fi };
				wake_nf()
			:: else
			fi;
			goto retry
		:: (d == 0 && (st == EMPTY || st == CLAIMED)) || d == -1 ->
			/* empty for now: spin, or sleep on not-empty (§4) */
			if
			:: sleeping ->
end_wait:			nekick & (1 << me);
				nesleep = nesleep & ~(1 << me);
				sleeping = false
#ifndef NOSPIN
			:: !sleeping && !spinning && !slept ->
				/* spin, once per wait (as Ring's waiter does) */
				nespin = nespin | (1 << me);
				spinning = true
#endif
#ifdef STOPS
			:: !sleeping && spinning && gone == 0 ->
				ENDSPIN;
				STOP
#endif
			:: !sleeping ->
				nesleep = nesleep | (1 << me);
#ifndef NOSPIN
				if
				:: spinning -> ENDSPIN
				:: else
				fi;
#endif
				nekick = nekick & ~(1 << me);   /* read the word */
				sleeping = true;
#ifndef NOSPIN
				slept = true
#endif
			fi;
			goto retry
		:: d > 0 || (d == 0 && st == TAKEN) ->
			atomic { if :: tail == t -> tail = t + 1 :: else fi };
			goto retry
		:: else -> assert(false) /* corrupt */
		fi;
		if
		:: sleeping -> nesleep = nesleep & ~(1 << me); sleeping = false
		:: else
		fi;
#ifndef NOSPIN
		slept = false;
#endif

		/* read ahead: consecutive full cells */
		lv[0] = v;
		n = 1;
		do
		:: n < B ->
			if
			:: atomic { cst[IDX(t+n)] == FULL && clap[IDX(t+n)] == LAP(t+n) -> lv[n] = cpl[IDX(t+n)] }; n++
			:: else -> break
			fi
		:: else -> break
		od;

		/* step intent */
		ph[me] = IDLE;
		CRASH;
		atomic {
			ptk[me] = t;
			i = 0;
			do
			:: i < n -> pv[me*B + i] = lv[i]; i++
			:: else -> break
			od;
			ph[me] = CLAIMING; pn[me] = n; pm[me] = 0; pmask[me] = 0
		};
ring_deq_intent:
		CRASH;

		/* step claim */
		m = 0;
		do
		:: m < n ->
			if
			:: atomic { cst[IDX(t+m)] == FULL && clap[IDX(t+m)] == LAP(t+m) && cpl[IDX(t+m)] == pv[me*B + m] ->
				cst[IDX(t+m)] = TAKEN; cpl[IDX(t+m)] = OWNER(me); m++ };
ring_deq_claim:
				CRASH
			:: else -> break
			fi
		:: else -> break
		od;
		if
		:: m == 0 -> ph[me] = IDLE; goto retry
		:: else
		fi;

		/* step hold */
		atomic { ph[me] = HOLD; pm[me] = m };
ring_deq_hold:
		CRASH;
		advance_tail(t + m);

		/* step release */
		i = 0;
		do
		:: i < m ->
			atomic { cst[IDX(t+i)] = EMPTY; clap[IDX(t+i)] = LAP(t+i) + 1; cpl[IDX(t+i)] = 0 };
			i++;
ring_deq_release:
			CRASH
		:: else -> break
		od;

		/* step done: the dequeue returns the values */
		atomic {
			ph[me] = DELIVERED;
			i = 0;
			do
			:: i < m -> v = pv[me*B + i]; assert(deq[v] == 0); deq[v]++; i++
			:: else -> break
			od
		};
ring_deq_done:
		CRASH;
		wake_nf()
#ifndef NOSPIN
		;
		if
		:: spinning ->
			ENDSPIN;
#ifdef STOPS
			if :: gone == 0 -> STOP :: true fi
#endif
		:: else
		fi
#endif
	od;
died:
	skip
#ifdef STOPS
	;
stopped:
end_stopped:
	skip
#endif
}

/* ------------------------------------------------------------------ */

/* The orphans a recovery run found, reported only when it completes
 * (Recover returns them; the caller acts on them). */
byte onum; byte oval[B]; byte okind[B];
#define K_NOTENQ  1
#define K_UNDELIV 2
#define K_MAYBE   3
#define K_ENQD    4

inline report(v, kind) { oval[onum] = v; okind[onum] = kind; onum++ }

#define OWNED(i, state) \
	(cst[IDX(t+(i))] == state && clap[IDX(t+(i))] == LAP(t+(i)) && cpl[IDX(t+(i))] == own)

/* Recover(x) of §3.6 for each dead party, after its death only. */
proctype supervisor()
{
	byte x, i, t, n, m, mask, own, phase;

end_idle:
	do
	:: if
	   :: dead[0] && !recd[0] -> x = 0
	   :: dead[1] && !recd[1] -> x = 1
#if NPART > 2
	   :: dead[2] && !recd[2] -> x = 2
#endif
#if NPART > 3
	   :: dead[3] && !recd[3] -> x = 3
#endif
#if NPART > 4
	   :: dead[4] && !recd[4] -> x = 4
#endif
	   fi;
again:
		onum = 0;
		own = OWNER(x);
		atomic { phase = ph[x]; n = pn[x]; m = pm[x]; mask = pmask[x]; t = ptk[x] };
		if
		:: phase == IDLE -> goto sweep
		:: x < NP && phase == ENQUEUED ->
			i = 0;
			do
			:: i < m -> report(pv[x*B + i], K_ENQD); i++
			:: else -> break
			od
		:: x < NP && (phase == CLAIMING || phase == CLAIMEDP || phase == ABORTING) ->
			if
			:: phase == CLAIMING -> mask = (1 << n) - 1
			:: phase == CLAIMEDP ->
				/* decide once, record the decision, then act on it */
				mask = 0; i = 0;
				do
				:: i < n ->
					if
					:: i >= m || OWNED(i, CLAIMED) -> mask = mask | (1 << i)
					:: else
					fi;
					i++
				:: else -> break
				od;
				atomic { ph[x] = ABORTING; pmask[x] = mask };
				RINT
			:: phase == ABORTING -> skip
			fi;
			i = 0;
			do
			:: i < n ->
				if
				:: mask & (1 << i) ->
					atomic { if :: OWNED(i, CLAIMED) -> cst[IDX(t+i)] = SKIP; cpl[IDX(t+i)] = 0 :: else fi };
					RINT;
					report(pv[x*B + i], K_NOTENQ)
				:: else
				fi;
				i++
			:: else -> break
			od
		:: x >= NP && (phase == CLAIMING || phase == RECLAIM || phase == HOLD) ->
			if
			:: phase == CLAIMING ->
				mask = 0; i = 0;
				do
				:: i < n ->
					if
					:: OWNED(i, TAKEN) -> mask = mask | (1 << i)
					:: else
					fi;
					i++
				:: else -> break
				od;
				atomic { ph[x] = RECLAIM; pmask[x] = mask };
				RINT
			:: phase == RECLAIM -> skip
			:: phase == HOLD -> mask = (1 << m) - 1
			fi;
			i = 0;
			do
			:: i < n ->
				if
				:: mask & (1 << i) ->
					atomic { if :: OWNED(i, TAKEN) -> cst[IDX(t+i)] = EMPTY; clap[IDX(t+i)] = LAP(t+i) + 1; cpl[IDX(t+i)] = 0 :: else fi };
					RINT;
					report(pv[x*B + i], K_UNDELIV)
				:: else
				fi;
				i++
			:: else -> break
			od
		:: x >= NP && phase == DELIVERED ->
			i = 0;
			do
			:: i < m -> report(pv[x*B + i], K_MAYBE); i++
			:: else -> break
			od
		:: else -> assert(false) /* a phase the party's role cannot have */
		fi;
sweep:
		/* safety net: no cell may stay owned by the dead party */
		i = 0;
		do
		:: i < CAP ->
			atomic {
				if
				:: cpl[i] == own && cst[i] == CLAIMED -> cst[i] = SKIP; cpl[i] = 0; swept++
				:: cpl[i] == own && cst[i] == TAKEN -> cst[i] = EMPTY; clap[i]++; cpl[i] = 0; swept++
				:: else
				fi
			};
			i++
		:: else -> break
		od;
		atomic {
			nesleep = nesleep & ~(1 << x); nfsleep = nfsleep & ~(1 << x);
			nespin = nespin & ~(1 << x);
			nekick = 255; nfkick = 255
		};
		RINT;
		/* last: clear the record; the orphans go to the caller */
		atomic {
			ph[x] = IDLE;
			i = 0;
			do
			:: i < onum ->
				if
				:: okind[i] == K_NOTENQ  -> assert(pub[oval[i]] == 0); notenq[oval[i]]++
				:: okind[i] == K_UNDELIV -> assert(deq[oval[i]] == 0); undeliv[oval[i]]++
				:: okind[i] == K_MAYBE   -> assert(deq[oval[i]] == 1); maybe[oval[i]]++
				:: okind[i] == K_ENQD    -> assert(pub[oval[i]] == 1); enqd[oval[i]]++
				fi;
				i++
			:: else -> break
			od;
			onum = 0;
			recd[x] = true
		}
	od
}

/* ------------------------------------------------------------------ */

init {
	byte i, v, p;
	atomic {
		i = 0;
		do
		:: i < NP -> run producer(i); i++
		:: else -> break
		od;
		do
		:: i < NPART -> run consumer(i); i++
		:: else -> break
		od;
		run supervisor()
	};

	/* When nothing can move any more, check the end state. */
	timeout;
	atomic {
		i = 0;
		do
		:: i < NPART -> assert(!dead[i] || recd[i]); i++   /* recovery ran for every death */
		:: else -> break
		od;
		assert(swept == 0);   /* the records named every cell a dead party held */
		if
		:: livec > 0 ->
			/* progress: with a consumer alive, every live producer
			 * finished and the ring drained */
			assert(finished + crashes - (NC - livec - gone) == NP);   /* a stopped consumer is not a death */
			i = 0;
			do
			:: i < CAP -> assert(cst[i] == EMPTY); i++
			:: else -> break
			od
		:: else
		fi;
		v = 1;
		do
		:: v <= NV ->
			p = (v - 1) / K;
			assert(pub[v] <= 1 && notenq[v] <= 1 && undeliv[v] <= 1 && maybe[v] <= 1 && deq[v] <= 1);
			if
			:: pub[v] ->
				/* in the ring: delivered once, or handed to recovery once */
				assert(notenq[v] == 0);
				assert(deq[v] + undeliv[v] == 1 || livec == 0 && deq[v] + undeliv[v] == 0)
			:: else ->
				assert(deq[v] == 0 && undeliv[v] == 0 && enqd[v] == 0);
				/* a claim that was never published is reported */
				assert(!claimedv[v] || dead[p] && notenq[v] == 1)
			fi;
			assert(!maybe[v] || deq[v] == 1);
			v++
		:: else -> break
		od
	}
}
