package controllers

import (
	"fmt"
	"slices"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
)

// ingressKind is how claimguard wires an Ingress.
type ingressKind uint8

const (
	// kindUnsupported: the Ingress is served by a controller claimguard cannot wire (or by none).
	kindUnsupported ingressKind = iota
	// kindNginx: ingress-nginx, wired with auth-url annotations.
	kindNginx
	// kindTraefik: Traefik, wired with a Middleware and router.middlewares.
	kindTraefik
)

// classification says how an Ingress is served and, when it cannot be wired, why.
type classification struct {
	kind ingressKind
	// controller is the IngressClass spec.controller, "" when no class was found.
	controller string
	// problem is the reason an unsupported Ingress cannot be wired, for the condition message.
	problem string
}

// classifier maps Ingresses to the ingress controller that serves them, from the cluster's
// IngressClasses. It is built per pass from the cache and is read-only afterwards.
type classifier struct {
	opts     WiringOptions
	byName   map[string]*networkingv1.IngressClass
	defaults []string // names of the IngressClasses marked as the cluster default
}

func newClassifier(opts WiringOptions, classes []networkingv1.IngressClass) *classifier {
	c := &classifier{opts: opts, byName: make(map[string]*networkingv1.IngressClass, len(classes))}
	for i := range classes {
		ic := &classes[i]
		c.byName[ic.Name] = ic
		if ic.Annotations[annotationDefaultIngressClass] == "true" {
			c.defaults = append(c.defaults, ic.Name)
		}
	}
	slices.Sort(c.defaults)
	return c
}

func (c *classifier) kindOf(controller string) ingressKind {
	switch {
	case slices.Contains(c.opts.NginxControllers, controller):
		return kindNginx
	case slices.Contains(c.opts.TraefikControllers, controller):
		return kindTraefik
	default:
		return kindUnsupported
	}
}

// classify follows what the ingress controllers themselves do: spec.ingressClassName first,
// then the legacy kubernetes.io/ingress.class annotation, then the default IngressClass.
func (c *classifier) classify(ing *networkingv1.Ingress) classification {
	if ing.Spec.IngressClassName != nil && *ing.Spec.IngressClassName != "" {
		name := *ing.Spec.IngressClassName
		ic, ok := c.byName[name]
		if !ok {
			return classification{problem: fmt.Sprintf("IngressClass %q does not exist", name)}
		}
		return c.fromClass(ic)
	}
	if name, ok := ing.Annotations[annotationLegacyIngressClass]; ok && name != "" {
		if ic, ok := c.byName[name]; ok {
			return c.fromClass(ic)
		}
		// Before IngressClass objects existed the annotation held the controller's class
		// name, "nginx" or "traefik" by default, and both controllers still honour it.
		switch strings.ToLower(name) {
		case "nginx":
			return classification{kind: kindNginx, controller: defaultNginxController}
		case "traefik":
			return classification{kind: kindTraefik, controller: defaultTraefikController}
		}
		return classification{problem: fmt.Sprintf("annotation %s: %q names no IngressClass", annotationLegacyIngressClass, name)}
	}
	switch len(c.defaults) {
	case 0:
		return classification{problem: "no ingressClassName and no default IngressClass"}
	case 1:
		return c.fromClass(c.byName[c.defaults[0]])
	default:
		return classification{problem: fmt.Sprintf("no ingressClassName and %d default IngressClasses (%s)", len(c.defaults), strings.Join(c.defaults, ", "))}
	}
}

func (c *classifier) fromClass(ic *networkingv1.IngressClass) classification {
	cl := classification{kind: c.kindOf(ic.Spec.Controller), controller: ic.Spec.Controller}
	if cl.kind == kindUnsupported {
		cl.problem = fmt.Sprintf("IngressClass %q is served by %q, which claimguard does not wire", ic.Name, ic.Spec.Controller)
	}
	return cl
}
