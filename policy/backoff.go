package policy

import "time"

// Backoff is how long the n-th retry (n ≥ 1; the retry after the first
// attempt is the first) waits: a random time in [d/2, d] with
// d = min(Max, Initial·2^(n−1)). rnd returns a number in [0, 1); nil means
// no jitter (the upper bound d).
func (r Retry) Backoff(n int, rnd func() float64) time.Duration {
	if n < 1 {
		n = 1
	}
	d := r.Initial.D()
	for i := 1; i < n && d < r.Max.D(); i++ {
		d *= 2
	}
	if d > r.Max.D() || d <= 0 {
		d = r.Max.D()
	}
	if rnd == nil {
		return d
	}
	half := d / 2
	return half + time.Duration(rnd()*float64(d-half+1))
}
