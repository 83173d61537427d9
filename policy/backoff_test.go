package policy

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	r := Retry{Initial: Duration(time.Second), Max: Duration(10 * time.Second)}
	for _, tc := range []struct {
		n    int
		want time.Duration // upper bound d
	}{
		{1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {4, 8 * time.Second},
		{5, 10 * time.Second}, {40, 10 * time.Second}, {0, time.Second},
	} {
		if got := r.Backoff(tc.n, nil); got != tc.want {
			t.Errorf("Backoff(%d) = %v, want %v", tc.n, got, tc.want)
		}
		if got := r.Backoff(tc.n, func() float64 { return 0 }); got != tc.want/2 {
			t.Errorf("Backoff(%d, rnd=0) = %v, want %v", tc.n, got, tc.want/2)
		}
		if got := r.Backoff(tc.n, func() float64 { return 0.999999999 }); got > tc.want || got < tc.want*99/100 {
			t.Errorf("Backoff(%d, rnd→1) = %v, want just under %v", tc.n, got, tc.want)
		}
	}
}
