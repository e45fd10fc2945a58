package admission

import (
	"fmt"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
	"github.com/claimguard/claimguard/internal/wiring"
)

// change is one Ingress create or update as the guard sees it.
type change struct {
	old *networkingv1.Ingress // nil on create
	new *networkingv1.Ingress
	own *wiring.Ownership
	cls *wiring.Classifier
	// opts are the wiring options, for the values claimguard sets.
	opts wiring.Options
}

// verdict is the guard's answer: refusals (each one sentence of what the change does), the
// policy that guards the Ingress, and warnings for what is allowed but unsafe.
type verdict struct {
	policy   *authv1alpha1.JWTPolicy
	refusals []string
	warnings []string
}

func (v *verdict) refuse(format string, args ...any) {
	v.refusals = append(v.refusals, fmt.Sprintf(format, args...))
}

// guarded returns the owner of ing and its classification, with ok when claimguard wires it.
func (c *change) guarded(ing *networkingv1.Ingress) (*authv1alpha1.JWTPolicy, wiring.Classification, bool) {
	owner := c.own.Owner(ing)
	cl := c.cls.Classify(ing)
	return owner, cl, owner != nil && cl.Kind != wiring.Unsupported
}

// judge applies the guard to a change. It refuses, for an Ingress that a policy guards before
// or after the change:
//   - leaving the guard: labels that drop it out of its policy's selection (or move it to
//     another policy), or a class claimguard cannot wire;
//   - removing or altering claimguard's annotations (a value claimguard does not set is refused
//     too, whoever set it: that is how injections through auth annotations arrive);
//   - a Traefik router.middlewares list that does not start with claimguard's Middleware;
//   - adding a bypass (see bypass). One that was already there, on an Ingress the same policy
//     guarded before, is let through with a warning: the change does not add it.
//
// An Ingress that no policy guards is not judged.
func judge(c *change) verdict {
	var v verdict
	var (
		oldOwner *authv1alpha1.JWTPolicy
		oldGuard bool
	)
	if c.old != nil {
		oldOwner, _, oldGuard = c.guarded(c.old)
	}
	owner, cl, guard := c.guarded(c.new)
	if oldGuard {
		v.policy = oldOwner
		switch {
		case owner == nil:
			v.refuse("its labels no longer match spec.ingressSelector of JWTPolicy %s, which would leave it unguarded", oldOwner.Name)
		case owner.Name != oldOwner.Name:
			v.refuse("its labels move it from JWTPolicy %s to JWTPolicy %s", oldOwner.Name, owner.Name)
		case cl.Kind == wiring.Unsupported:
			v.refuse("it moves to an ingress class claimguard cannot wire (%s), which would leave it unguarded", cl.Problem)
		}
	}
	if !guard {
		return v
	}
	if v.policy == nil {
		v.policy = owner
	}
	samePolicy := oldGuard && oldOwner.Name == owner.Name
	judgeWiring(c, &v, owner, cl.Kind)

	for _, key := range sortedKeys(c.new.Annotations) {
		value := c.new.Annotations[key]
		why, bad := bypass(key, value)
		if !bad {
			continue
		}
		if samePolicy && c.old.Annotations[key] == value {
			if _, had := c.old.Annotations[key]; had {
				v.warnings = append(v.warnings, fmt.Sprintf("annotation %s stays, but %s; remove it", key, why))
				continue
			}
		}
		switch was, had := c.oldAnnotations()[key]; {
		case !had:
			v.refuse("it adds annotation %s: %s", key, why)
		case was != value:
			v.refuse("it changes annotation %s: %s", key, why)
		default: // unchanged, but the Ingress is newly guarded with it
			v.refuse("it brings the Ingress under the guard with annotation %s: %s", key, why)
		}
	}
	return v
}

func (c *change) oldAnnotations() map[string]string {
	if c.old == nil {
		return nil
	}
	return c.old.Annotations
}

// judgeWiring refuses removals and alterations of claimguard's annotations on an Ingress that
// owner guards. A value is acceptable when it is claimguard's for this owner, or when the
// change leaves it as it was (a policy edit the reconciler has not applied yet must not block
// unrelated edits). An annotation absent before and after is not the change's doing: the
// mutating webhook or the reconciler adds it.
func judgeWiring(c *change, v *verdict, owner *authv1alpha1.JWTPolicy, kind wiring.Kind) {
	desired := wiring.DesiredAnnotations(c.opts, owner, c.new, kind, nil)
	// Values claimguard sets for this owner on either kind of controller: an nginx annotation
	// left on an Ingress that moved to Traefik is claimguard's own, not an injection.
	ours := wiring.DesiredAnnotations(c.opts, owner, c.new, wiring.Nginx, nil)
	old := c.oldAnnotations()
	for _, key := range managedKeys {
		nv, inNew := c.new.Annotations[key]
		ov, inOld := old[key]
		unchanged := c.old != nil && inNew == inOld && nv == ov
		if unchanged {
			continue
		}
		if key == wiring.AnnotationTraefikRouterMiddlewares {
			if kind == wiring.Traefik {
				judgeMiddlewares(c, v, owner, nv)
			}
			continue
		}
		_, wanted := desired[key]
		switch {
		case !inNew && inOld && wanted:
			v.refuse("it removes annotation %s, %s", key, managedWhy[key])
		case inNew && nv != ours[key]:
			if want, ok := ours[key]; ok {
				v.refuse("it sets annotation %s to a value claimguard does not set (claimguard sets %q), %s", key, want, managedWhy[key])
			} else {
				v.refuse("it sets annotation %s, which claimguard manages and does not set for this Ingress", key)
			}
		}
	}
}

// judgeMiddlewares checks a Traefik router.middlewares value: claimguard's Middleware first, so
// that no request reaches another middleware or the service unchecked, and no other entry
// naming a claimguard Middleware (those names are reserved).
func judgeMiddlewares(c *change, v *verdict, owner *authv1alpha1.JWTPolicy, value string) {
	ref := wiring.MiddlewareRef(owner.Namespace, owner.Name)
	entries := wiring.MiddlewareEntries(value)
	if len(entries) == 0 || entries[0] != ref {
		v.refuse("annotation %s does not start with %s, claimguard's Middleware, so requests could reach the service unchecked", wiring.AnnotationTraefikRouterMiddlewares, ref)
	}
	for _, e := range entries[min(1, len(entries)):] {
		if wiring.IsClaimguardMiddleware(c.new.Namespace, e) {
			v.refuse("annotation %s names %s, a claimguard Middleware (the names %s-%s* are reserved)", wiring.AnnotationTraefikRouterMiddlewares, e, c.new.Namespace, wiring.MiddlewarePrefix)
		}
	}
}

// refusalMessage is the whole answer for a refused change: what was refused, which policy
// guards the Ingress, and how to do it properly.
func refusalMessage(ing *networkingv1.Ingress, v verdict) string {
	var b strings.Builder
	fmt.Fprintf(&b, "claimguard refused this change to Ingress %s/%s, which JWTPolicy %s guards:", ing.Namespace, ingressName(ing), v.policy.Name)
	for _, r := range v.refusals {
		b.WriteString("\n- ")
		b.WriteString(r)
	}
	fmt.Fprintf(&b, "\nTo change how the Ingress is guarded, edit JWTPolicy %s/%s (its ingressSelector, issuers or claims); claimguard keeps the Ingress's auth annotations itself. "+
		"To take the Ingress out of the guard, ask a cluster administrator to exempt it (label %s=true).", v.policy.Namespace, v.policy.Name, wiring.LabelExempt)
	return b.String()
}

func ingressName(ing *networkingv1.Ingress) string {
	if ing.Name != "" {
		return ing.Name
	}
	return ing.GenerateName + "<generated>"
}
