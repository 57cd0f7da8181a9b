// Package testlog helps tests read what a server under test writes: its
// log, or a command's output, while it runs.
package testlog

import (
	"bytes"
	"sync"
)

// Buffer collects writes from many goroutines (a logger shared by a
// server's handlers) for a test to read at any time. The zero value is
// ready to use.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
