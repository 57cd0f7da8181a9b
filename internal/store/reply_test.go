package store

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// TestReplyConn: a write must be answered within the timeout; an idle
// connection, or one whose writes were answered, has no deadline; the
// user's own read deadline still applies, the earlier one winning.
func TestReplyConn(t *testing.T) {
	const timeout = 100 * time.Millisecond
	pair := func(t *testing.T, timeout time.Duration) (*replyConn, net.Conn) {
		t.Helper()
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		go func() { // drain what a writes, as a server reads it
			buf := make([]byte, 64)
			for {
				if _, err := b.Read(buf); err != nil {
					return
				}
			}
		}()
		return &replyConn{Conn: a, timeout: timeout}, b
	}
	read := func(c net.Conn) (time.Duration, error) {
		began := time.Now()
		_, err := c.Read(make([]byte, 64))
		return time.Since(began), err
	}

	t.Run("unanswered", func(t *testing.T) {
		c, _ := pair(t, timeout)
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		if took, err := read(c); !errors.Is(err, os.ErrDeadlineExceeded) || took > 10*timeout {
			t.Errorf("read after an unanswered write: %v after %v, want a deadline error after about %v", err, took, timeout)
		}
	})
	t.Run("answered, then idle", func(t *testing.T) {
		c, server := pair(t, timeout)
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		go server.Write([]byte("pong"))
		if _, err := read(c); err != nil {
			t.Fatalf("read of the answer: %v", err)
		}
		go func() { time.Sleep(3 * timeout); server.Write([]byte("notification")) }()
		if took, err := read(c); err != nil || took < 2*timeout {
			t.Errorf("idle read: %v after %v, want the notification after %v", err, took, 3*timeout)
		}
	})
	t.Run("the user's deadline", func(t *testing.T) {
		const long, short = 2 * time.Second, 300 * time.Millisecond
		c, _ := pair(t, long)
		if err := c.SetDeadline(time.Now().Add(short)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("startup")); err != nil {
			t.Fatal(err)
		}
		if took, err := read(c); !errors.Is(err, os.ErrDeadlineExceeded) || took > long/2 {
			t.Errorf("read: %v after %v, want the user's earlier deadline (%v)", err, took, short)
		}
		// The user clears its deadline (lib/pq, after startup): the
		// write's own still holds.
		if err := c.SetDeadline(time.Time{}); err != nil {
			t.Fatal(err)
		}
		if took, err := read(c); !errors.Is(err, os.ErrDeadlineExceeded) || took > 2*long {
			t.Errorf("read: %v after %v, want the write's deadline", err, took)
		}
	})
	t.Run("the write's deadline, earlier than the user's", func(t *testing.T) {
		c, _ := pair(t, timeout)
		if err := c.SetReadDeadline(time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		if took, err := read(c); !errors.Is(err, os.ErrDeadlineExceeded) || took > 10*timeout {
			t.Errorf("read: %v after %v, want the write's deadline (%v)", err, took, timeout)
		}
	})
	t.Run("a read already waiting when the write is sent", func(t *testing.T) {
		// lib/pq's reader waits for notifications while a ping is written.
		c, _ := pair(t, timeout)
		result := make(chan error, 1)
		go func() { _, err := read(c); result <- err }()
		time.Sleep(50 * time.Millisecond)
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-result:
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("waiting read: %v, want a deadline error", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a waiting read outlived the unanswered write's deadline by seconds")
		}
	})
}
