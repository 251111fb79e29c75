package main

import "testing"

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
