package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"

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
	// Peers: each pool's speed beside multiprocessing.Pool's, per task.
	if r.Peers != nil {
		if p, err := peersPlot(r.Peers); err != nil {
			return nil, err
		} else if p != nil {
			if err := save(p, "bench-peers.png", 10*vg.Inch, 6*vg.Inch); err != nil {
				return nil, err
			}
		}
	}
	return files, nil
}

// peerColors: one distinct color per pool (plotutil's palette has 7).
var peerColors = []color.Color{
	color.RGBA{0xd6, 0x27, 0x28, 0xff}, color.RGBA{0xff, 0x7f, 0x0e, 0xff}, color.RGBA{0x1f, 0x77, 0xb4, 0xff},
	color.RGBA{0x2c, 0xa0, 0x2c, 0xff}, color.RGBA{0x94, 0x67, 0xbd, 0xff}, color.RGBA{0x8c, 0x56, 0x4b, 0xff},
	color.RGBA{0xe3, 0x77, 0xc2, 0xff}, color.RGBA{0x7f, 0x7f, 0x7f, 0xff}, color.RGBA{0xbc, 0xbd, 0x22, 0xff},
	color.RGBA{0x17, 0xbe, 0xcf, 0xff},
}

// peersPlot draws, for each measure, one bar per pool: how many times
// faster than multiprocessing.Pool it was, on a log scale (the ratios
// span 1/1000 to 30: a pool slower than multiprocessing's has a bar
// that points down).
func peersPlot(pr *peerReport) (*plot.Plot, error) {
	base, ok := pr.Pools["multiprocessing.Pool"]
	if !ok {
		return nil, nil
	}
	measures := []struct {
		name string
		get  func(peerFigures) float64
	}{
		{"apply p50", func(f peerFigures) float64 { return f.ApplyP50 }},
		{"apply p99", func(f peerFigures) float64 { return f.ApplyP99 }},
		{"1 ms task", func(f peerFigures) float64 { return f.WorkP50 }},
		{"map", func(f peerFigures) float64 { return f.Map }},
		{humanSize(pr.EchoSize) + " bytes", func(f peerFigures) float64 { return f.EchoBytes }},
		{humanSize(pr.EchoSize) + " numpy", func(f peerFigures) float64 {
			if f.EchoNumpy == nil {
				return 0
			}
			return *f.EchoNumpy
		}},
	}
	names := make([]string, 0, len(pr.Pools))
	for n := range pr.Pools {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { // shmexec first, then the others by name
		si, sj := len(names[i]) > 7 && names[i][:7] == "shmexec", len(names[j]) > 7 && names[j][:7] == "shmexec"
		if si != sj {
			return si
		}
		return names[i] < names[j]
	})
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Times faster than multiprocessing.Pool (2 workers, the same tasks, medians of %d rounds)", pr.Rounds)
	p.Y.Label.Text = "speed-up over multiprocessing.Pool (log scale)"
	labels := make([]string, len(measures))
	for i, m := range measures {
		labels[i] = m.name
	}
	p.NominalX(labels...)
	w := vg.Points(60 / float64(len(names)))
	lo, hi := 0.0, 0.0 // the decades the bars span, log10 of the ratios
	for k, n := range names {
		vals := make(plotter.Values, len(measures))
		for i, m := range measures {
			v, b := m.get(pr.Pools[n]), m.get(base)
			if v > 0 && b > 0 { // else no bar: a measure this pool lacks
				vals[i] = math.Log10(b / v)
			}
			lo, hi = math.Min(lo, vals[i]), math.Max(hi, vals[i])
		}
		bars, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return nil, err
		}
		bars.Offset = w * vg.Length(float64(k)-float64(len(names)-1)/2)
		bars.Color = peerColors[k%len(peerColors)]
		bars.LineStyle.Width = 0
		p.Add(bars)
		p.Legend.Add(n, bars)
	}
	// 1x: a line across, and the decades labelled as ratios.
	one, err := plotter.NewLine(plotter.XYs{{X: -0.5, Y: 0}, {X: float64(len(measures)) - 0.5, Y: 0}})
	if err != nil {
		return nil, err
	}
	one.LineStyle.Width = vg.Points(0.5)
	p.Add(one)
	var ticks []plot.Tick
	for d := math.Floor(lo); d <= math.Ceil(hi); d++ {
		ticks = append(ticks, plot.Tick{Value: d, Label: strconv.FormatFloat(math.Pow(10, d), 'g', -1, 64) + "x"})
	}
	p.Y.Tick.Marker = plot.ConstantTicks(ticks)
	// Room above the tallest bar for the legend (a row per pool).
	p.Y.Min = math.Floor(lo)
	p.Y.Max = math.Ceil(hi) + (math.Ceil(hi)-math.Floor(lo))*0.035*float64(len(names))
	p.Legend.Top = true
	return p, nil
}
