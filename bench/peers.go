package main

import (
	"fmt"
	"sort"
)

// peerFigures is one pool's row of `python -m shmexec.bench --peers`.
type peerFigures struct {
	ApplyP50  float64  `json:"apply_p50"`
	ApplyP99  float64  `json:"apply_p99"`
	WorkP50   float64  `json:"work_p50"` // the round trip of a 1 ms task less the task
	Map       float64  `json:"map"`
	MapScaled bool     `json:"map_scaled"`
	EchoBytes float64  `json:"echo_bytes"`
	EchoNumpy *float64 `json:"echo_numpy"`
}

type peerReport struct {
	NMap     int                    `json:"n_map"`
	EchoSize int                    `json:"echo_size"`
	Rounds   int                    `json:"rounds"`
	Pools    map[string]peerFigures `json:"pools"`
}

// benchPeers runs every importable Python pool with the same tasks
// (python/shmexec/_peers.py) and adds shmexec.Pool's figures with each
// other pool as a baseline.
func benchPeers(r *benchReport, python string, quick bool) error {
	var p peerReport
	if ok, err := runPythonBench(r, python, quick, &p, "--peers"); !ok {
		return err
	}
	ours, ok := p.Pools["shmexec.Pool"]
	if !ok {
		return fmt.Errorf("peer bench output has no shmexec.Pool row")
	}
	r.Peers = &p
	var names []string
	for name := range p.Pools {
		if name != "shmexec.Pool" {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	size := humanSize(p.EchoSize)
	rows := []struct {
		name, unit string
		scale      float64
		get        func(peerFigures) float64
	}{
		{"Pool.apply p50", "µs", 1e6, func(f peerFigures) float64 { return f.ApplyP50 }},
		{"Pool.apply p99", "µs", 1e6, func(f peerFigures) float64 { return f.ApplyP99 }},
		{"Pool.apply of a 1 ms task, time over it, p50", "µs", 1e6, func(f peerFigures) float64 { return f.WorkP50 }},
		{fmt.Sprintf("Pool.map of %d tiny tasks, a list", p.NMap), "ms", 1e3, func(f peerFigures) float64 { return f.Map }},
		{size + " bytes echo", "ms", 1e3, func(f peerFigures) float64 { return f.EchoBytes }},
		{size + " numpy echo", "ms", 1e3, func(f peerFigures) float64 {
			if f.EchoNumpy == nil {
				return 0
			}
			return *f.EchoNumpy
		}},
	}
	for _, row := range rows {
		if row.get(ours) == 0 {
			continue // numpy not installed
		}
		var bs []baseline
		for _, name := range names {
			bs = append(bs, baseline{Name: name, Value: row.get(p.Pools[name]) * row.scale})
		}
		r.add(figure{Group: fmt.Sprintf("peers (Python, 2 workers, median of %d rounds)", p.Rounds), Name: "shmexec " + row.name,
			Unit: row.unit, Lower: true, Value: row.get(ours) * row.scale, Baselines: bs})
	}
	return nil
}
