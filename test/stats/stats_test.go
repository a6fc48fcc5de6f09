package stats

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestQuantileIsTheNearestRank(t *testing.T) {
	x := []float64{5, 1, 4, 2, 3}
	tests := []struct {
		q    float64
		want float64
	}{{0, 1}, {0.5, 3}, {0.99, 5}, {1, 5}, {0.25, 2}}
	for _, tt := range tests {
		assert.Equal(t, tt.want, Quantile(x, tt.q), "q=%v", tt.q)
	}
	assert.Equal(t, []float64{5, 1, 4, 2, 3}, x, "the input is left as it was")
}

func TestMedianCICoversTheTrueMedianAndNarrowsWithMoreRounds(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	draw := func(n int) []float64 {
		x := make([]float64, n)
		for i := range x {
			x[i] = 2 + rng.NormFloat64()*0.3 // a paired ratio around ×2
		}
		return x
	}
	small, large := MedianCI(draw(30), 2000, 7), MedianCI(draw(300), 2000, 7)
	for _, ci := range []Interval{small, large} {
		assert.Less(t, ci.Lo, 2.0)
		assert.Greater(t, ci.Hi, 2.0)
	}
	assert.Less(t, large.Hi-large.Lo, small.Hi-small.Lo, "ten times the rounds, a narrower interval")
}

func TestMedianCIIsReproducibleFromItsSeed(t *testing.T) {
	x := []float64{1.9, 2.1, 2.4, 1.7, 2.0, 2.2, 1.8}
	assert.Equal(t, MedianCI(x, 500, 3), MedianCI(x, 500, 3))
}

func TestRatiosPairRoundByRound(t *testing.T) {
	assert.Equal(t, []float64{2, 0.5}, Ratios([]float64{4, 1}, []float64{2, 2}))
	assert.Panics(t, func() { Ratios([]float64{1}, []float64{1, 2}) })
}
