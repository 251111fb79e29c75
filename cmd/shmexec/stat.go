package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmexec/shmexec/executor"
)

func writeJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// liveView redraws the pool's state in place every interval until
// interrupted, count refreshes have been drawn, or the pool is gone. It
// only reads the segment, through a read-only mapping.
func liveView(f *os.File, out io.Writer, interval time.Duration, count int, socket string) error {
	if interval <= 0 {
		interval = time.Second
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	tty := isTerminal(out)
	var prev executor.Stats
	prevAt := time.Time{}
	for n := 0; count == 0 || n < count; n++ {
		s, err := executor.ReadStats(f)
		if err != nil {
			return err
		}
		now := time.Now()
		rate := -1.0
		if !prevAt.IsZero() {
			rate = float64(s.Collected-prev.Collected) / now.Sub(prevAt).Seconds()
		}
		var b strings.Builder
		if tty {
			b.WriteString("\x1b[H\x1b[2J") // home, clear: redraw in place
		} else if n > 0 {
			b.WriteString("\n") // not a terminal: one frame after another
		}
		render(&b, s, rate, socket, now)
		io.WriteString(out, b.String())
		if s.State == "dead" || s.State == "closed" || syscall.Kill(s.SupervisorPID, 0) == syscall.ESRCH {
			fmt.Fprintf(out, "\nthe pool is gone (%s)\n", s.State)
			return nil
		}
		prev, prevAt = s, now
		select {
		case <-sigs:
			return nil
		case <-time.After(interval):
		}
	}
	return nil
}

func render(b *strings.Builder, s executor.Stats, rate float64, socket string, now time.Time) {
	fmt.Fprintf(b, "shmexec pool at %s   supervisor pid %d   %s   %s\n\n", socket, s.SupervisorPID, s.State, now.Format("15:04:05"))
	if s.StartFailure != "" {
		fmt.Fprintf(b, "NO WORKER CAN START (jobs fail with WorkerStart; the pool keeps trying): %s\n\n", s.StartFailure)
	}
	thr := "-"
	if rate >= 0 {
		thr = fmt.Sprintf("%.0f jobs/s", rate)
	}
	fmt.Fprintf(b, "jobs      submitted %d   collected %d   queued %d   throughput %s\n", s.Submitted, s.Collected, s.Queued, thr)
	fmt.Fprintf(b, "space     slots %d/%d   arena pages %d/%d\n", s.SlotsInUse, s.Slots, s.PagesInUse, s.Pages)
	var kinds []string
	for k, v := range s.Failed {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, v))
	}
	sort.Strings(kinds)
	if len(kinds) == 0 {
		kinds = []string{"none"}
	}
	fmt.Fprintf(b, "errors    %s   (unobserved %d)\n", strings.Join(kinds, ", "), s.Unobserved)
	fmt.Fprintf(b, "recovery  worker deaths %d   recovered %d   retried %d   respawned %d   republished %d\n", s.WorkerDeaths, s.Recovered, s.Retried, s.Respawned, s.Republished)
	fmt.Fprintf(b, "clients   died %d   detached %d   slots reclaimed %d\n\n", s.ClientDeaths, s.Detached, s.Reclaimed)
	tw := tabwriter.NewWriter(b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKER\tPID\tSTATE\tJOB\tDONE\tRESTARTS")
	for i, w := range s.Workers {
		job := "-"
		if w.Current >= 0 {
			job = fmt.Sprintf("%d (slot %d)", w.Job, w.Current)
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%d\t%d\n", i, w.PID, w.State, job, w.Done, w.Restarts)
	}
	fmt.Fprintln(tw, "\t\t\t\t\t")
	fmt.Fprintln(tw, "CLIENT\tPID\tSTATE\tSUBMITTED\tCOLLECTED\tOUTQUEUE\tSLOTS")
	for _, c := range s.Clients {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%d\t%d\t%d\t%d\n", c.Index, c.PID, c.State, c.Submitted, c.Collected, c.Outqueue, c.Slots)
	}
	tw.Flush()
}

// isTerminal reports whether w is a terminal (the live view redraws in
// place only there).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
