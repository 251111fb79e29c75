package main

import (
	"encoding/json"
	"testing"
)

func TestRatioWords(t *testing.T) {
	for _, tc := range []struct {
		r     float64
		lower bool
		want  string
	}{{5.2, true, "5.20x faster"}, {0.5, true, "2.00x slower"}, {3, false, "3.00x better"}, {0.25, false, "4.00x worse"}, {0, true, "-"}} {
		if got := ratioWords(tc.r, tc.lower); got != tc.want {
			t.Errorf("ratioWords(%v, %v) = %q, want %q", tc.r, tc.lower, got, tc.want)
		}
	}
}

func TestPythonLatenciesDecode(t *testing.T) {
	var p pyReport
	in := `{"pool_apply_1": {"p50": 2e-5, "p99": 1e-4, "p999": 3e-4, "steal": 0.25, "quiet": {"p50": 2e-5, "p99": 6e-5, "p999": 9e-5, "rounds": 7, "of": 10}},
		"pool_apply": {"p50": 1e-5, "p99": 2e-5, "p999": 3e-5, "steal": null, "quiet": null}}`
	if err := json.Unmarshal([]byte(in), &p); err != nil {
		t.Fatal(err)
	}
	if one := p.OneWorker; one.P99 != 1e-4 || one.Steal != 0.25 || one.Quiet == nil || one.Quiet.P99 != 6e-5 || one.Quiet.Rounds != 7 || one.Quiet.Of != 10 {
		t.Fatalf("one worker: %+v (quiet %+v)", one, one.Quiet)
	}
	if p.PoolApply.Quiet != nil || p.PoolApply.Steal != 0 || p.PoolApply.P50 != 1e-5 {
		t.Fatalf("pool apply: %+v", p.PoolApply)
	}
}
