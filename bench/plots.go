package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// writePlots draws the latency distributions and the payload curves into
// dir and returns the files written.
func writePlots(r *benchReport, dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var files []string
	save := func(p *plot.Plot, name string, w, h vg.Length) error {
		f := filepath.Join(dir, name)
		if err := p.Save(w, h, f); err != nil {
			return fmt.Errorf("plot: %w", err)
		}
		files = append(files, f)
		return nil
	}

	// Latency: the cumulative distribution of each round trip, log time.
	lp := plot.New()
	lp.Title.Text = "Round trip of an empty job vs two-process ping-pongs (" + r.Machine["cpus"] + " CPUs)"
	lp.X.Label.Text = "round trip (µs, log scale)"
	lp.Y.Label.Text = "fraction of round trips at most this long"
	lp.X.Scale = plot.LogScale{}
	lp.X.Tick.Marker = plot.LogTicks{Prec: -1}
	lp.Legend.Top = false
	lp.Legend.Left = false
	var names []string
	for k := range r.Latency {
		names = append(names, k)
	}
	sort.Strings(names)
	var lines []any
	for _, k := range names {
		s := r.Latency[k]
		pts := make(plotter.XYs, 0, 200)
		step := max(1, len(s)/200)
		for i := 0; i < len(s); i += step {
			pts = append(pts, plotter.XY{X: math.Max(s[i], 0.01), Y: float64(i+1) / float64(len(s))})
		}
		pts = append(pts, plotter.XY{X: math.Max(s[len(s)-1], 0.01), Y: 1})
		lines = append(lines, k, pts)
	}
	if len(lines) > 0 {
		if err := plotutil.AddLines(lp, lines...); err != nil {
			return nil, err
		}
		if err := save(lp, "bench-latency.png", 9*vg.Inch, 5*vg.Inch); err != nil {
			return nil, err
		}
	}

	// Payload: round-trip throughput against payload size, log-log.
	if len(r.Payload) > 0 {
		pp := plot.New()
		pp.Title.Text = "Echo round-trip throughput against payload size"
		pp.X.Label.Text = "payload (bytes, log scale)"
		pp.Y.Label.Text = "GB/s (log scale)"
		pp.X.Scale, pp.Y.Scale = plot.LogScale{}, plot.LogScale{}
		pp.X.Tick.Marker, pp.Y.Tick.Marker = plot.LogTicks{Prec: -1}, plot.LogTicks{Prec: -1}
		pp.Legend.Top = true
		pp.Legend.Left = true
		series := []struct {
			name string
			get  func(payloadRow) float64
		}{
			{"Go, copying", func(p payloadRow) float64 { return p.Copy }},
			{"Go, zero-copy", func(p payloadRow) float64 { return p.ZeroCopy }},
			{"memcpy (one copy, one process)", func(p payloadRow) float64 { return p.Memcpy }},
			{"Python shmexec", func(p payloadRow) float64 { return p.PyShmexec }},
			{"Python multiprocessing.Pool.apply", func(p payloadRow) float64 { return p.PyPoolEcho }},
		}
		var lines []any
		for _, s := range series {
			var pts plotter.XYs
			for _, p := range r.Payload {
				if v := s.get(p); v > 0 {
					pts = append(pts, plotter.XY{X: float64(p.Size), Y: v})
				}
			}
			if len(pts) > 0 {
				lines = append(lines, s.name, pts)
			}
		}
		if err := plotutil.AddLinePoints(pp, lines...); err != nil {
			return nil, err
		}
		if err := save(pp, "bench-payload.png", 9*vg.Inch, 5*vg.Inch); err != nil {
			return nil, err
		}
	}

	// Scaling: Map throughput against worker count.
	if len(r.Scaling) > 1 {
		sp := plot.New()
		sp.Title.Text = fmt.Sprintf("Map throughput against workers (%s CPUs)", r.Machine["cpus"])
		sp.X.Label.Text = "workers"
		sp.Y.Label.Text = "jobs/s"
		var e, s plotter.XYs
		for _, row := range r.Scaling {
			e = append(e, plotter.XY{X: float64(row.Workers), Y: row.EmptyRate})
			s = append(s, plotter.XY{X: float64(row.Workers), Y: row.SpinRate})
		}
		if err := plotutil.AddLinePoints(sp, "empty jobs", e, "jobs that spin 50 µs", s); err != nil {
			return nil, err
		}
		if err := save(sp, "bench-scaling.png", 7*vg.Inch, 4*vg.Inch); err != nil {
			return nil, err
		}
	}
	return files, nil
}
