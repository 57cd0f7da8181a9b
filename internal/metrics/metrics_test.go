package metrics_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-dev/gatehouse/internal/metrics"
)

func newCounter() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_total", Help: "x"}, []string{"reason"})
}

func TestRegisterTwiceSharesTheSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	first, err := metrics.Register(reg, newCounter())
	if err != nil {
		t.Fatal(err)
	}
	second, err := metrics.Register(reg, newCounter())
	if err != nil {
		t.Fatal(err)
	}
	if second != first {
		t.Fatal("the second registration returned a new collector, not the registered one: its counts would go nowhere")
	}
}

func TestRegisterConflictFails(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := metrics.Register(reg, newCounter()); err != nil {
		t.Fatal(err)
	}
	other := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_total", Help: "other help"}, []string{"reason"})
	if _, err := metrics.Register(reg, other); err == nil {
		t.Fatal("registering a different collector under the same name succeeded")
	}
}

func TestRegisterNilRegistry(t *testing.T) {
	c := newCounter()
	got, err := metrics.Register(nil, c)
	if err != nil || got != c {
		t.Fatalf("Register(nil) = %v, %v; want c, nil", got, err)
	}
}
