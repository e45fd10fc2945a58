package reliability

import (
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
)

// statusResumeBound is the bound on the time from the leader's death to the next
// status write by the survivor. With the default lease (15s) the survivor may take the lease
// once it has seen the dead leader's record unrenewed for 15s, plus up to one retry period (2s).
const statusResumeBound = 20 * time.Second

// TestLeaderFailover runs two managers with the default leader-election flags, kills the leader
// with SIGKILL (no lease release) and changes the policy at once: the survivor writes the new
// status within 20s of the kill, and both replicas answered forward-auth all along (the killed
// one until it died, the survivor throughout, without a single failed or changed decision).
func TestLeaderFailover(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	createNamespace(t, env.Client, "shop")
	createPolicy(t, env.Client, policyDoc("shop", "orders", inlineKeys(), ""))
	flags := []string{"--leader-election-namespace", "default"}
	a := startManager(t, "manager-a", env.Kubeconfig, flags...)
	a.waitReady(t, 60*time.Second)
	waitFor(t, 30*time.Second, "Ready=True", func() error {
		return conditionIs(env.Client, "shop", "orders", authv1alpha1.ConditionReady, metav1.ConditionTrue, "")
	})
	b := startManager(t, "manager-b", env.Kubeconfig, flags...)
	b.waitReady(t, 60*time.Second)

	leader, survivor := a, b
	if !strings.Contains(a.logs.String(), "Successfully acquired lease") {
		leader, survivor = b, a
	}
	if !strings.Contains(leader.logs.String(), "Successfully acquired lease") || strings.Contains(survivor.logs.String(), "Successfully acquired lease") {
		t.Fatal("cannot tell which manager leads: exactly one log should say it acquired the lease")
	}

	mix := newTokenMix(t, "ES256")
	tr := startTraffic(t, 2, 10*time.Millisecond, []target{
		{leader.name, leader.authURL("shop", "orders")},
		{survivor.name, survivor.authURL("shop", "orders")},
	}, mix.probes("ES256"))
	time.Sleep(2 * time.Second)

	tr.disable(leader.name)
	leader.kill9(t)
	killed := time.Now()
	// A spec change that does not change any decision of the traffic: the next status write
	// (observedGeneration) can only come from the survivor.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p, err := getPolicy(env.Client, "shop", "orders")
		if err != nil {
			return err
		}
		p.Spec.PublicPaths = append(p.Spec.PublicPaths, "/healthz")
		return env.Client.Update(ctx(), p)
	}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*statusResumeBound, "the survivor writes status", func() error {
		p, err := getPolicy(env.Client, "shop", "orders")
		if err != nil {
			return err
		}
		if p.Status.ObservedGeneration != p.Generation {
			return fmt.Errorf("observedGeneration %d, generation %d", p.Status.ObservedGeneration, p.Generation)
		}
		return conditionIs(env.Client, "shop", "orders", authv1alpha1.ConditionReady, metav1.ConditionTrue, "")
	})
	resumed := time.Since(killed)
	if resumed > statusResumeBound {
		t.Errorf("status writes resumed %s after the leader was killed, want within %s", resumed.Round(100*time.Millisecond), statusResumeBound)
	}
	time.Sleep(time.Second)
	tr.Stop()
	r := tr.expectClean(t, 100)
	t.Logf("failover: status writes resumed %s after SIGKILL of the leader; %s answered %d requests before it died, %s %d without a failure",
		resumed.Round(100*time.Millisecond), leader.name, r.answered[leader.name], survivor.name, r.answered[survivor.name])
	if r.answered[leader.name] < 50 {
		t.Errorf("the leader answered %d requests before it was killed; both replicas serve", r.answered[leader.name])
	}
}
