package executor

import (
	"fmt"
	"os"

	"github.com/shmexec/shmexec/internal/sysx"
	"github.com/shmexec/shmexec/shm"
)

// Stats is a snapshot of the pool's counters.
type Stats struct {
	State         string `json:"state"` // open, closing, closed or dead
	SupervisorPID int    `json:"supervisor_pid"`
	// StartFailure says why no worker can start, while none can (jobs
	// then fail with ErrWorkerStart; the pool goes on trying); "" else.
	StartFailure string `json:"start_failure,omitempty"`

	Submitted  uint64            `json:"submitted"`
	Collected  uint64            `json:"collected"`
	Unobserved uint64            `json:"unobserved"` // failures whose error nobody read
	Failed     map[string]uint64 `json:"failed"`     // by kind
	Recovered  uint64            `json:"recovered"`
	Retried    uint64            `json:"retried"`
	Respawned  uint64            `json:"respawned"`

	WorkerDeaths  uint64 `json:"worker_deaths"`
	StartFailures uint64 `json:"start_failures"`
	Republished   uint64 `json:"republished"`
	ClientDeaths  uint64 `json:"client_deaths"`
	Detached      uint64 `json:"clients_detached"` // clients that left by Close
	Reclaimed     uint64 `json:"reclaimed"`

	Queued     int `json:"queued"` // inqueue length
	SlotsInUse int `json:"slots_in_use"`
	Slots      int `json:"slots"`
	PagesInUse int `json:"pages_in_use"`
	Pages      int `json:"pages"`
	PageSize   int `json:"page_size"` // bytes in an arena page

	Workers []WorkerStats `json:"workers"`
	Clients []ClientStats `json:"clients"` // client slots in use (0 is the pool owner's)
}

// WorkerStats is one worker's state.
type WorkerStats struct {
	PID      int    `json:"pid"`
	State    string `json:"state"`
	Current  int64  `json:"current_slot"` // slot of the current job, -1 if none
	Job      uint64 `json:"current_job"`  // its job id, 0 if none
	Done     uint64 `json:"done"`
	Restarts uint32 `json:"restarts"`
	// Moved counts the times the worker moved off the CPU of a caller
	// whose spins take turns with its own (docs/DESIGN.md, Waiting).
	Moved uint64 `json:"moved"`
}

// ClientStats is one attached client's state.
type ClientStats struct {
	Index     int    `json:"index"`
	PID       int    `json:"pid"`
	State     string `json:"state"` // active, or dead while being reclaimed
	Submitted uint64 `json:"submitted"`
	Collected uint64 `json:"collected"`
	Outqueue  int    `json:"outqueue"` // results waiting in its outqueue
	Slots     int    `json:"slots"`    // job slots that are its
}

func poolStateName(st uint32) string {
	switch st {
	case poolOpen:
		return "open"
	case poolClosing:
		return "closing"
	case poolClosed:
		return "closed"
	case poolDead:
		return "dead"
	}
	return fmt.Sprintf("state-%d", st)
}

var workerStateNames = []string{"empty", "starting", "idle", "busy", "exiting", "failed"}

var codeNames = []string{"ok", "handler_error", "worker_crashed", "timeout", "cancelled", "pool_closed", "unknown_handler", "too_large", "worker_start"}

// Stats reads the pool's counters from the segment, as the owner's
// client or an attached one sees them. After Close it returns the zero
// Stats.
func (c *Client) Stats() Stats {
	if !c.l.enter() {
		return Stats{}
	}
	defer c.l.exit()
	return c.l.stats()
}

// Stats reads the counters from the segment. After Close it returns the
// zero Stats.
func (p *Pool) Stats() Stats { return p.client.Stats() }

func (l *layout) stats() Stats {
	s := Stats{Failed: map[string]uint64{}}
	s.State = poolStateName(l.poolState().Load())
	s.SupervisorPID = int(l.control.Uint32(ctlSupPID).Load())
	s.StartFailure = l.startFailure()
	for c := 0; c < l.g.clients; c++ {
		s.Submitted += l.client(c).Uint64(crSubmitted).Load()
		s.Collected += l.client(c).Uint64(crCollected).Load()
		s.Unobserved += l.client(c).Uint64(crUnobserved).Load()
	}
	for code := 1; code <= numCodes; code++ {
		if n := l.counter(ctrFailed + code).Load(); n > 0 {
			s.Failed[codeNames[code]] = n
		}
	}
	s.Recovered = l.counter(ctrRecovered).Load()
	s.Retried = l.counter(ctrRetried).Load()
	s.Respawned = l.counter(ctrRespawned).Load()
	s.WorkerDeaths = l.counter(ctrWorkerDeaths).Load()
	s.StartFailures = l.counter(ctrStartFailures).Load()
	s.Republished = l.counter(ctrRepublished).Load()
	s.ClientDeaths = l.counter(ctrClientDeaths).Load()
	s.Detached = l.counter(ctrDetached).Load()
	s.Reclaimed = l.counter(ctrReclaimed).Load()
	s.Queued = l.inq.Len()
	perClient := make([]int, l.g.clients)
	for idx := 0; idx < l.g.slots; idx++ {
		if wState(l.slotState(idx).Load()) != slotFree {
			s.SlotsInUse++
			if c := int(unpackMeta(l.slot(idx).Uint64(slMeta).Load()).client); c < l.g.clients {
				perClient[c]++
			}
		}
	}
	s.Slots = l.g.slots
	s.PagesInUse = l.pagesInUse()
	s.Pages = l.g.pages
	s.PageSize = pageSize
	for c := 0; c < l.g.clients; c++ {
		r := l.client(c)
		st := r.Uint32(crState).Load()
		if st == clientFree && c != 0 {
			continue
		}
		name := "active"
		if st == clientDead {
			name = "dead"
		}
		s.Clients = append(s.Clients, ClientStats{
			Index: c, PID: int(r.Uint32(crPID).Load()), State: name,
			Submitted: r.Uint64(crSubmitted).Load(), Collected: r.Uint64(crCollected).Load(),
			Outqueue: l.outq[c].Len(), Slots: perClient[c],
		})
	}
	for i := 0; i < l.g.workers; i++ {
		r := l.worker(i)
		st := int(r.Uint32(wrState).Load())
		name := "?"
		if st < len(workerStateNames) {
			name = workerStateNames[st]
		}
		cur, job := int64(-1), uint64(0)
		if c := r.Uint64(wrCurrent).Load(); c&(1<<32) != 0 && refIdx(uint32(c)) < l.g.slots {
			cur = int64(refIdx(uint32(c)))
			job = l.slot(int(cur)).Uint64(slJobID).Load()
		}
		s.Workers = append(s.Workers, WorkerStats{
			PID: int(r.Uint32(wrPID).Load()), State: name, Current: cur, Job: job,
			Done: r.Uint64(wrDone).Load(), Restarts: r.Uint32(wrRestarts).Load(), Moved: r.Uint64(wrMoved).Load(),
		})
	}
	return s
}

// ReadStats reads a pool's counters through a read-only mapping of its
// segment f, as an observer in another process does (it never writes to
// the pool). f stays the caller's.
func ReadStats(f *os.File) (Stats, error) {
	dup, err := sysx.Dup(f)
	if err != nil {
		return Stats{}, err
	}
	seg, err := shm.AttachReadOnly(dup)
	if err != nil {
		dup.Close()
		return Stats{}, err
	}
	defer seg.Close()
	l, err := openLayout(seg, false, geometry{})
	if err != nil {
		return Stats{}, err
	}
	return l.stats(), nil
}
