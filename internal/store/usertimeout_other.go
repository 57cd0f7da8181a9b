//go:build !linux

package store

import (
	"syscall"
	"time"
)

// userTimeout is nil where TCP_USER_TIMEOUT is not set: replyConn's
// deadlines alone notice a silent network there.
func userTimeout(time.Duration) func(network, address string, c syscall.RawConn) error {
	return nil
}
