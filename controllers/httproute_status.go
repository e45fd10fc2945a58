package controllers

import (
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
)

// wiringOutcome is one kind's (Ingresses', HTTPRoutes') part of the IngressesWired condition.
type wiringOutcome struct {
	status  metav1.ConditionStatus
	reason  string
	message string
}

// setWiredCondition sets IngressesWired from the Ingresses' and the HTTPRoutes' outcomes: False
// when either is (the reason of the first, both messages), Unknown when either is, else True:
// Wired when either wired something, NothingSelected when neither selected anything.
func setWiredCondition(s *scope, outs ...wiringOutcome) {
	pick := func(status metav1.ConditionStatus, reasons ...string) (string, string, bool) {
		reason := ""
		var msgs []string
		for _, o := range outs {
			if o.status != status || (len(reasons) > 0 && !slices.Contains(reasons, o.reason)) {
				continue
			}
			if reason == "" {
				reason = o.reason
			}
			if o.message != "" {
				msgs = append(msgs, o.message)
			}
		}
		return reason, strings.Join(msgs, "; "), reason != ""
	}
	set := func(status metav1.ConditionStatus, reason, msg string) {
		setCondition(s.policy, s.now, authv1alpha1.ConditionIngressesWired, status, reason, msg)
	}
	if reason, msg, ok := pick(metav1.ConditionFalse); ok {
		set(metav1.ConditionFalse, reason, msg)
		return
	}
	if reason, msg, ok := pick(metav1.ConditionUnknown); ok {
		set(metav1.ConditionUnknown, reason, msg)
		return
	}
	if _, msg, ok := pick(metav1.ConditionTrue, authv1alpha1.ReasonWired); ok {
		set(metav1.ConditionTrue, authv1alpha1.ReasonWired, msg)
		return
	}
	_, msg, _ := pick(metav1.ConditionTrue)
	set(metav1.ConditionTrue, authv1alpha1.ReasonNothingSelected, msg)
}
