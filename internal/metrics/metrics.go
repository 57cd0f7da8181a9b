// Package metrics holds what Gatehouse's packages share about Prometheus
// metrics: registering a collector so that building the same part twice
// against one registry (tests, or two parts sharing a series) reuses the
// series instead of failing.
package metrics

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c with reg and returns it; if an identical collector is
// already registered (same names, labels and help), it returns that one, so
// that both users count into the same series. A nil reg registers nothing
// and returns c. Any other registration failure is returned.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if reg == nil {
		return c, nil
	}
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}
