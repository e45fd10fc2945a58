package controllers

import (
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
)

// Status message limits: conditions allow 32 KiB, but a message is read in `kubectl get -o
// wide` and events, so it names a few objects and counts the rest.
const (
	maxMessage    = 1024
	maxListed     = 5
	maxStatusKIDs = 64
)

// setCondition sets a condition on p. It always records metadata.generation and keeps
// LastTransitionTime unless the status flips, so a pass that changes nothing leaves the
// condition byte-for-byte equal and no status write happens.
func setCondition(p *authv1alpha1.JWTPolicy, now time.Time, typ string, status metav1.ConditionStatus, reason, message string) {
	c := metav1.Condition{
		Type:               typ,
		Status:             status,
		ObservedGeneration: p.Generation,
		Reason:             reason,
		Message:            truncate(message, maxMessage),
		// The API server stores seconds; so do we, or equality would never hold.
		LastTransitionTime: metav1.NewTime(now).Rfc3339Copy(),
	}
	for i := range p.Status.Conditions {
		old := &p.Status.Conditions[i]
		if old.Type != typ {
			continue
		}
		if old.Status == status {
			c.LastTransitionTime = old.LastTransitionTime
		}
		*old = c
		return
	}
	p.Status.Conditions = append(p.Status.Conditions, c)
}

// getCondition returns the condition of type typ, nil when absent.
func getCondition(conds []metav1.Condition, typ string) *metav1.Condition {
	for i := range conds {
		if conds[i].Type == typ {
			return &conds[i]
		}
	}
	return nil
}

// summarizeReady computes Ready last, from the other conditions: True only when the policy
// compiled, every issuer's keys are loaded, its Ingresses are wired and no other policy owns
// one it selects. Otherwise it names the first conditions that are not as they should be.
func summarizeReady(p *authv1alpha1.JWTPolicy, now time.Time, compileErr string) {
	if compileErr != "" {
		setCondition(p, now, authv1alpha1.ConditionReady, metav1.ConditionFalse, authv1alpha1.ReasonInvalidSpec,
			"the policy does not compile and every request to it is denied (policy_not_found): "+compileErr)
		return
	}
	status := metav1.ConditionTrue
	var problems []string
	for _, want := range []struct {
		typ    string
		status metav1.ConditionStatus
	}{
		{authv1alpha1.ConditionKeysLoaded, metav1.ConditionTrue},
		{authv1alpha1.ConditionIngressesWired, metav1.ConditionTrue},
		{authv1alpha1.ConditionConflict, metav1.ConditionFalse},
	} {
		c := getCondition(p.Status.Conditions, want.typ)
		switch {
		case c == nil || c.Status == metav1.ConditionUnknown:
			if status == metav1.ConditionTrue {
				status = metav1.ConditionUnknown
			}
		case c.Status != want.status:
			status = metav1.ConditionFalse
		default:
			continue
		}
		msg := want.typ + " is not yet known"
		if c != nil {
			msg = fmt.Sprintf("%s (%s)", want.typ, c.Reason)
			if c.Message != "" {
				msg += ": " + c.Message
			}
		}
		problems = append(problems, msg)
	}
	if status == metav1.ConditionTrue {
		setCondition(p, now, authv1alpha1.ConditionReady, metav1.ConditionTrue, authv1alpha1.ReasonCompiled, "")
		return
	}
	setCondition(p, now, authv1alpha1.ConditionReady, status, authv1alpha1.ReasonNotReady, strings.Join(problems, "; "))
}

// listNames formats up to maxListed items and counts the rest: "a, b and 3 more".
func listNames(items []string) string {
	if len(items) <= maxListed {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:maxListed], ", "), len(items)-maxListed)
}

// plural returns "1 Ingress" or "n Ingresses".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
