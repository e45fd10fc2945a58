package reliability

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// probe is one kind of forward-auth request the traffic sends, with the answer it must get.
type probe struct {
	name   string
	token  string // "" sends no Authorization header
	want   int
	reason string // the X-Claimguard-Reason of a denial
}

// target is one forward-auth endpoint the traffic is sent to.
type target struct {
	name string // for reports ("manager-a")
	url  string // base URL + /authz/ns/policy
}

// traffic sends the probes round-robin to every target from a few workers, paced so it does
// not take a shared core, and records every answer that is not the expected one (a wrong
// status or reason, or no answer at all) and the slowest answer.
type traffic struct {
	targets []target
	probes  []probe

	stop chan struct{}
	wg   sync.WaitGroup

	sent atomic.Int64

	mu         sync.Mutex
	bad        map[string]int // "target probe: got" -> count
	badFirst   map[string]time.Time
	maxLatency time.Duration
	perTarget  map[string]int
	disabled   map[string]bool // targets no longer checked (a process the scenario killed)
}

// startTraffic starts workers goroutines, each sending one request every pace.
func startTraffic(t *testing.T, workers int, pace time.Duration, targets []target, probes []probe) *traffic {
	t.Helper()
	tr := &traffic{
		targets:   targets,
		probes:    probes,
		stop:      make(chan struct{}),
		bad:       map[string]int{},
		badFirst:  map[string]time.Time{},
		perTarget: map[string]int{},
		disabled:  map[string]bool{},
	}
	for w := range workers {
		tr.wg.Add(1)
		go tr.worker(w, pace)
	}
	t.Cleanup(tr.Stop)
	return tr
}

func (tr *traffic) worker(w int, pace time.Duration) {
	defer tr.wg.Done()
	tick := time.NewTicker(pace)
	defer tick.Stop()
	for i := w; ; i++ {
		select {
		case <-tr.stop:
			return
		case <-tick.C:
		}
		tg := tr.targets[i%len(tr.targets)]
		tr.mu.Lock()
		off := tr.disabled[tg.name]
		tr.mu.Unlock()
		if off {
			continue
		}
		p := tr.probes[(i/len(tr.targets))%len(tr.probes)]
		h := originalRequest("/orders/42")
		if p.token != "" {
			h.Set("Authorization", "Bearer "+p.token)
		}
		a, err := askWith(tg.url, h)
		tr.sent.Add(1)
		got := ""
		switch {
		case err != nil:
			got = "error: " + shortErr(err)
		case a.status != p.want || (p.reason != "" && a.reason != p.reason):
			got = a.String()
		}
		tr.mu.Lock()
		if tr.disabled[tg.name] {
			// Killed while this request was under way: not a finding.
			tr.mu.Unlock()
			continue
		}
		tr.perTarget[tg.name]++
		if a.latency > tr.maxLatency {
			tr.maxLatency = a.latency
		}
		if got != "" {
			k := fmt.Sprintf("%s %s: got %s", tg.name, p.name, got)
			if tr.bad[k] == 0 {
				tr.badFirst[k] = time.Now()
			}
			tr.bad[k]++
		}
		tr.mu.Unlock()
	}
}

func shortErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}

// disable stops checking target name (and counting its answers): the scenario is about to
// kill the process behind it.
func (tr *traffic) disable(name string) {
	tr.mu.Lock()
	tr.disabled[name] = true
	tr.mu.Unlock()
}

// Stop stops the workers and waits for them; it may be called more than once.
func (tr *traffic) Stop() {
	select {
	case <-tr.stop:
	default:
		close(tr.stop)
	}
	tr.wg.Wait()
}

// report summarises the traffic so far.
type trafficReport struct {
	sent       int64
	answered   map[string]int
	bad        []string
	maxLatency time.Duration
}

func (tr *traffic) report() trafficReport {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	r := trafficReport{sent: tr.sent.Load(), answered: map[string]int{}, maxLatency: tr.maxLatency}
	for k, v := range tr.perTarget {
		r.answered[k] = v
	}
	for k, n := range tr.bad {
		r.bad = append(r.bad, fmt.Sprintf("%s (%d times, first at %s)", k, n, tr.badFirst[k].Format("15:04:05.000")))
	}
	sort.Strings(r.bad)
	return r
}

// expectClean fails the test when any answer was unexpected, and when a target answered
// fewer than min requests (the traffic did not really flow).
func (tr *traffic) expectClean(t *testing.T, min int) trafficReport {
	t.Helper()
	r := tr.report()
	for _, b := range r.bad {
		t.Errorf("unexpected answer: %s", b)
	}
	for _, tg := range tr.targets {
		if r.answered[tg.name] < min && !tr.disabled[tg.name] {
			t.Errorf("%s answered only %d requests, want at least %d", tg.name, r.answered[tg.name], min)
		}
	}
	t.Logf("traffic: %d requests, per target %v, slowest answer %s, unexpected answers %d",
		r.sent, r.answered, r.maxLatency.Round(time.Millisecond), len(r.bad))
	return r
}

// statusProbe is a probe expecting a 200.
func allowProbe(name, token string) probe {
	return probe{name: name, token: token, want: http.StatusOK}
}
