package loadtest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Proc is a process's resource use as /proc reports it.
type Proc struct {
	// CPU is user plus system time (utime+stime of /proc/PID/stat).
	CPU time.Duration
	// Ticks is the same in clock ticks, the unit /proc counts in.
	Ticks int64
	// PeakRSS is VmHWM of /proc/PID/status: the peak resident set size.
	PeakRSS int64
	// RSS is VmRSS: the resident set size now.
	RSS int64
}

// ReadProc reads pid's CPU time and memory from /proc (Linux only).
func ReadProc(pid int) (Proc, error) {
	var p Proc
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return p, fmt.Errorf("loadtest: server process: %w", err)
	}
	// The command name (field 2) is in parentheses and may hold spaces;
	// the fields after the last ')' start with field 3 (state).
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return p, fmt.Errorf("loadtest: /proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return p, fmt.Errorf("loadtest: /proc/%d/stat: unexpected format", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return p, fmt.Errorf("loadtest: /proc/%d/stat: unexpected format", pid)
	}
	p.Ticks = utime + stime
	p.CPU = time.Duration(p.Ticks) * time.Second / time.Duration(ClockTicks())

	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return p, fmt.Errorf("loadtest: server process: %w", err)
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch name {
		case "VmHWM":
			p.PeakRSS = parseKB(value)
		case "VmRSS":
			p.RSS = parseKB(value)
		}
	}
	return p, nil
}

// MachineBusy reads /proc/stat's aggregate line: the time all CPUs spent
// busy (user, nice, system, irq, softirq, steal) since boot.
func MachineBusy() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("loadtest: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, errors.New("loadtest: /proc/stat: unexpected format")
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system irq softirq steal
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, errors.New("loadtest: /proc/stat: unexpected format")
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / time.Duration(ClockTicks()), nil
}

// CommandCPU sums the CPU time of every process whose command name
// (/proc/PID/comm) is name, e.g. "postgres": the database's share of a
// run, which no single PID holds. Processes that exit between two readings
// take their time with them, so compare readings over a window in which
// the processes that matter (pooled connections) live on.
func CommandCPU(name string) (time.Duration, error) {
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("loadtest: %w", err)
	}
	var total time.Duration
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || strings.TrimSpace(string(comm)) != name {
			continue
		}
		if p, err := ReadProc(pid); err == nil {
			total += p.CPU
		}
	}
	return total, nil
}

// parseKB parses "   1234 kB" into bytes.
func parseKB(s string) int64 {
	n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(s), "kB")), 10, 64)
	return n << 10
}

var clockTicks = sync.OnceValue(func() int64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil && n > 0 {
			return n
		}
	}
	return 100 // USER_HZ on every Linux architecture Go supports
})

// ClockTicks is the kernel's USER_HZ (`getconf CLK_TCK`), the unit of the
// CPU times in /proc/PID/stat.
func ClockTicks() int64 { return clockTicks() }
