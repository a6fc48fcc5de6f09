// Package stats holds the few statistics the measurements report: medians and nearest-rank
// quantiles, and bootstrap confidence intervals of a median of paired per-round ratios, so that a
// comparison is stated with its uncertainty instead of as two unpaired medians.
package stats

import (
	"math/rand/v2"
	"slices"
)

// Quantile is the nearest-rank q-quantile of x (0 ≤ q ≤ 1); x is not modified. It panics on an
// empty x: a measurement without samples is a bug of the measurement.
func Quantile(x []float64, q float64) float64 {
	s := slices.Clone(x)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1)+0.5)]
}

// Median is the nearest-rank median of x.
func Median(x []float64) float64 { return Quantile(x, 0.5) }

// Interval is a two-sided confidence interval.
type Interval struct{ Lo, Hi float64 }

// MedianCI returns the percentile-bootstrap 95% confidence interval of the median of x: x is
// resampled with replacement n times (from a fixed seed, so that a report can be reproduced) and
// the 2.5th and 97.5th percentiles of the resampled medians are returned. The samples must be
// independent: pass one value per round (a per-round ratio of paired variants), not the variants'
// raw samples.
func MedianCI(x []float64, n int, seed uint64) Interval {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	medians := make([]float64, n)
	resample := make([]float64, len(x))
	for i := range medians {
		for j := range resample {
			resample[j] = x[rng.IntN(len(x))]
		}
		medians[i] = Median(resample)
	}
	return Interval{Lo: Quantile(medians, 0.025), Hi: Quantile(medians, 0.975)}
}

// Ratios returns a[i]/b[i] for each round i: paired per-round ratios of two variants measured in the
// same rounds. It panics when the lengths differ.
func Ratios(a, b []float64) []float64 {
	if len(a) != len(b) {
		panic("stats.Ratios: the variants were not measured in the same rounds")
	}
	out := make([]float64, len(a))
	for i := range a {
		out[i] = a[i] / b[i]
	}
	return out
}
