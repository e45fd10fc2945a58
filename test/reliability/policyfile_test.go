package reliability

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/claimguard/claimguard/internal/testenv"
)

// reloadMetrics reads serve's reload counters and gauge.
func reloadMetrics(t *testing.T, s *serveProc) (failures, successes, lastOK float64) {
	t.Helper()
	m := s.metrics(t)
	failures, _ = metric(m, "claimguard_policy_reloads_total", "result", "failure")
	successes, _ = metric(m, "claimguard_policy_reloads_total", "result", "success")
	lastOK, _ = metric(m, "claimguard_policy_last_reload_success")
	return failures, successes, lastOK
}

func waitServeReady(t *testing.T, s *serveProc) {
	t.Helper()
	waitFor(t, 30*time.Second, "serve ready", func() error {
		if c := statusOf(s.base + "/readyz"); c != http.StatusOK {
			return fmt.Errorf("/readyz %d", c)
		}
		return nil
	})
}

// TestServePolicyFileTornWrites damages serve's policy file in the ways writers do while
// traffic flows: truncated to zero, half written in place, replaced by garbage, written by a
// slow writer that pauses in the middle. The last good policies stay in force throughout (no
// request changes decision), every bad version is counted as a failed reload with the gauge at
// 0, and good content is picked up again (the gauge back at 1).
func TestServePolicyFileTornWrites(t *testing.T) {
	t.Parallel()
	good := policyDoc("shop", "orders", inlineKeys(), "") + "---\n" + policyDoc("shop", "other", inlineKeys(), "")
	s := startServe(t, good)
	waitServeReady(t, s)
	mix := newTokenMix(t, "ES256")
	tr := startTraffic(t, 2, 10*time.Millisecond, []target{
		{"orders", s.base + "/authz/shop/orders"},
		{"other", s.base + "/authz/shop/other"},
	}, mix.probes("ES256"))

	half := len(good) / 2
	if strings.HasPrefix(good[half:], "---") || strings.HasSuffix(good[:half], "---\n") {
		t.Fatal("the half-way cut falls on a document boundary; a valid prefix is not a torn write")
	}
	for _, step := range []struct {
		name  string
		write func() error
	}{
		{"truncated to 0 bytes", func() error { return os.Truncate(s.file, 0) }},
		{"half written in place", func() error { return os.WriteFile(s.file, []byte(good[:half]), 0o600) }},
		{"replaced by garbage", func() error {
			tmp := s.file + ".new"
			if err := os.WriteFile(tmp, []byte("\x00\x01\x02 PK\x03\x04 {{{ not: [yaml"), 0o600); err != nil {
				return err
			}
			return os.Rename(tmp, s.file)
		}},
		{"a writer pausing half way", func() error {
			f, err := os.Create(s.file) // truncates, as `>` and most libraries do
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := f.WriteString(good[:half]); err != nil {
				return err
			}
			time.Sleep(time.Second) // longer than the watcher's 200ms debounce
			_, err = f.WriteString(good[half:])
			return err
		}},
	} {
		failures, _, _ := reloadMetrics(t, s)
		if err := step.write(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		waitFor(t, 15*time.Second, step.name+": a failed reload counted", func() error {
			if f, _, _ := reloadMetrics(t, s); f <= failures {
				return fmt.Errorf("claimguard_policy_reloads_total{result=failure} %v", f)
			}
			return nil
		})
		if step.name != "a writer pausing half way" {
			if _, _, ok := reloadMetrics(t, s); ok != 0 {
				t.Errorf("%s: claimguard_policy_last_reload_success %v, want 0", step.name, ok)
			}
		}
		time.Sleep(700 * time.Millisecond) // traffic against the damaged file
	}

	// The slow writer finished with the good content again: the gauge says all is well.
	waitFor(t, 15*time.Second, "the gauge back at 1 once the file is whole again", func() error {
		if _, _, ok := reloadMetrics(t, s); ok != 1 {
			return fmt.Errorf("claimguard_policy_last_reload_success %v", ok)
		}
		return nil
	})

	// A good edit is picked up: a third policy appears.
	_, successes, _ := reloadMetrics(t, s)
	testenv.WriteAtomic(t, s.file, good+"---\n"+policyDoc("shop", "new", inlineKeys(), ""))
	took := waitFor(t, 15*time.Second, "the new policy served", func() error {
		if a, err := ask(s.base, "shop", "new", mix.valid); err != nil || a.status != http.StatusOK {
			return fmt.Errorf("shop/new: %s %v", a, err)
		}
		return nil
	})
	// The reload is counted just after the new policies are published: wait for it.
	waitFor(t, 5*time.Second, "the good edit counted as a successful reload", func() error {
		if _, succ, ok := reloadMetrics(t, s); succ <= successes || ok != 1 {
			return fmt.Errorf("successes %v (before %v), last_reload_success %v", succ, successes, ok)
		}
		return nil
	})
	tr.Stop()
	tr.expectClean(t, 100)
	t.Logf("a good edit after the damage was served %s after the write", took.Round(10*time.Millisecond))
	if !strings.Contains(s.logs.String(), "Policy file is invalid, keeping the last good policies") {
		t.Error("no log line says the bad file was refused")
	}
}

// TestServePolicyFileOversized: a policy file past the size limit (16 MiB) is refused with one
// clear line at start, and at reload the last good policies stay in force while memory stays
// bounded (the file is never read past the limit).
func TestServePolicyFileOversized(t *testing.T) {
	t.Parallel()
	const limitMiB = 16 // policyfile.MaxFileBytes
	dir := t.TempDir()
	big := dir + "/big.yaml"
	if err := os.WriteFile(big, []byte(policyDoc("shop", "orders", inlineKeys(), "")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, (limitMiB+1)<<20); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binary(t), "serve", "--policy-file", big, "--listen", "127.0.0.1:0").CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), "larger than 16 MiB") || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
		t.Errorf("serve on a %d MiB file: %v, output %q; want exit 1 and one line saying the limit", limitMiB+1, err, out)
	}

	s := startServe(t, policyDoc("shop", "orders", inlineKeys(), ""))
	waitServeReady(t, s)
	mix := newTokenMix(t, "ES256")
	before, err := testenv.ProcStatusKiB(s.cmd.Process.Pid, "VmHWM")
	if err != nil {
		t.Fatal(err)
	}
	failures, _, _ := reloadMetrics(t, s)
	const hugeMiB = 512
	if err := os.Truncate(s.file, hugeMiB<<20); err != nil { // sparse: costs no disk
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the oversized file refused", func() error {
		if f, _, _ := reloadMetrics(t, s); f <= failures {
			return fmt.Errorf("no failed reload yet")
		}
		return nil
	})
	for _, p := range mix.probes("ES256") {
		if a := mustAsk(t, s.base, "shop", "orders", p.token); a.status != p.want || (p.reason != "" && a.reason != p.reason) {
			t.Errorf("after the oversized file, %s: %s, want %d %s", p.name, a, p.want, p.reason)
		}
	}
	after, err := testenv.ProcStatusKiB(s.cmd.Process.Pid, "VmHWM")
	if err != nil {
		t.Fatal(err)
	}
	// A regular file's size is checked before it is read: refusing it costs no buffer at all.
	// The bound leaves room for the garbage of ordinary work (traffic, metrics scrapes).
	grew := (after - before) >> 10
	if grew > limitMiB {
		t.Errorf("peak memory grew by %d MiB refusing a %d MiB file; the read is not bounded", grew, hugeMiB)
	}
	if !strings.Contains(s.logs.String(), "larger than 16 MiB") {
		t.Error("the log does not say the file is too large")
	}
	t.Logf("a %d MiB policy file was refused at reload; peak memory grew by %d MiB (VmHWM %d -> %d MiB)", hugeMiB, grew, before>>10, after>>10)
}

// manyPolicies renders n policies shop-<i>/p (100 per namespace), each with the idp's keys
// inline, the same shape as policyDoc.
func manyPolicies(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString("---\n")
		}
		b.WriteString(policyDoc(fmt.Sprintf("team-%03d", i/100), fmt.Sprintf("p-%02d", i%100), inlineKeys(), ""))
	}
	return b.String()
}

// TestServe10kPolicies loads 10,000 policies (inline RSA and EC keys each, about 11 MB) from one
// file and records the load time and peak memory; the first and last policies answer, and an
// edit of the big file is reloaded.
func TestServe10kPolicies(t *testing.T) {
	t.Parallel()
	const n = 10000
	content := manyPolicies(n)
	start := time.Now()
	s := startServe(t, content)
	waitServeReady(t, s)
	loaded := time.Since(start)
	hwm, err := testenv.ProcStatusKiB(s.cmd.Process.Pid, "VmHWM")
	if err != nil {
		t.Fatal(err)
	}
	mix := newTokenMix(t, "RS256")
	for _, key := range [][2]string{{"team-000", "p-00"}, {"team-099", "p-99"}} {
		for _, p := range mix.probes("RS256") {
			if a := mustAsk(t, s.base, key[0], key[1], p.token); a.status != p.want || (p.reason != "" && a.reason != p.reason) {
				t.Errorf("%s/%s, %s: %s, want %d %s", key[0], key[1], p.name, a, p.want, p.reason)
			}
		}
	}
	if v, _ := metric(s.metrics(t), "claimguard_snapshot_policies", "state", "compiled"); v != n {
		t.Errorf("claimguard_snapshot_policies{state=compiled} = %v, want %d", v, n)
	}
	_, successes, _ := reloadMetrics(t, s)
	edit := time.Now()
	testenv.WriteAtomic(t, s.file, strings.Replace(content, "name: p-99, namespace: team-099", "name: p-renamed, namespace: team-099", 1))
	waitFor(t, 2*time.Minute, "the edited file reloaded", func() error {
		if _, succ, _ := reloadMetrics(t, s); succ <= successes {
			return fmt.Errorf("not reloaded yet")
		}
		return nil
	})
	reloaded := time.Since(edit)
	if a := mustAsk(t, s.base, "team-099", "p-renamed", mix.valid); a.status != http.StatusOK {
		t.Errorf("renamed policy after the reload: %s", a)
	}
	hwm2, err := testenv.ProcStatusKiB(s.cmd.Process.Pid, "VmHWM")
	if err != nil {
		t.Fatal(err)
	}
	rss, _ := testenv.ProcStatusKiB(s.cmd.Process.Pid, "VmRSS")
	t.Logf("10,000 policies (%.1f MB file): ready %s after start, VmHWM %d MiB; reload of an edit %s, VmHWM %d MiB, VmRSS %d MiB",
		float64(len(content))/1e6, loaded.Round(10*time.Millisecond), hwm>>10, reloaded.Round(10*time.Millisecond), hwm2>>10, rss>>10)
	if loaded > time.Minute {
		t.Errorf("loading 10,000 policies took %s, want under a minute", loaded)
	}
}
