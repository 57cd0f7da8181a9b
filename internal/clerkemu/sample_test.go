package clerkemu

import (
	"io/fs"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestSampleFiles: the embedded samples are exactly the listed types, so
// that SampleEventTypes offers only what SampleEvent can build.
func TestSampleFiles(t *testing.T) {
	names, err := fs.Glob(sampleEvents, "events/*.json")
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, n := range names {
		types = append(types, strings.TrimSuffix(strings.TrimPrefix(n, "events/"), ".json"))
	}
	if diff := cmp.Diff(slices.Sorted(slices.Values(sampleTypes)), types); diff != "" {
		t.Errorf("samples (-listed types +files):\n%s", diff)
	}
}
