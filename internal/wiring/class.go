package wiring

import (
	"fmt"
	"slices"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
)

// Kind is how claimguard wires an Ingress.
type Kind uint8

const (
	// Unsupported: the Ingress is served by a controller claimguard cannot wire (or by none).
	Unsupported Kind = iota
	// Nginx: ingress-nginx, wired with auth-url annotations.
	Nginx
	// Traefik: Traefik, wired with a Middleware and router.middlewares.
	Traefik
)

// String names the kind for messages.
func (k Kind) String() string {
	switch k {
	case Nginx:
		return "ingress-nginx"
	case Traefik:
		return "Traefik"
	default:
		return "unsupported"
	}
}

// Classification says how an Ingress is served and, when it cannot be wired, why.
type Classification struct {
	Kind Kind
	// Controller is the IngressClass spec.controller, "" when no class was found.
	Controller string
	// Problem is the reason an unsupported Ingress cannot be wired, for the condition message.
	Problem string
}

// Classifier maps Ingresses to the ingress controller that serves them, from the cluster's
// IngressClasses. It is built from a cache read and is read-only afterwards.
type Classifier struct {
	opts     Options
	byName   map[string]*networkingv1.IngressClass
	defaults []string // names of the IngressClasses marked as the cluster default
}

// NewClassifier returns a Classifier over classes.
func NewClassifier(opts Options, classes []networkingv1.IngressClass) *Classifier {
	c := &Classifier{opts: opts, byName: make(map[string]*networkingv1.IngressClass, len(classes))}
	for i := range classes {
		ic := &classes[i]
		c.byName[ic.Name] = ic
		if ic.Annotations[AnnotationDefaultIngressClass] == "true" {
			c.defaults = append(c.defaults, ic.Name)
		}
	}
	slices.Sort(c.defaults)
	return c
}

func (c *Classifier) kindOf(controller string) Kind {
	switch {
	case slices.Contains(c.opts.NginxControllers, controller):
		return Nginx
	case slices.Contains(c.opts.TraefikControllers, controller):
		return Traefik
	default:
		return Unsupported
	}
}

// Classify follows what the ingress controllers themselves do: spec.ingressClassName first,
// then the legacy kubernetes.io/ingress.class annotation, then the default IngressClass.
func (c *Classifier) Classify(ing *networkingv1.Ingress) Classification {
	if ing.Spec.IngressClassName != nil && *ing.Spec.IngressClassName != "" {
		name := *ing.Spec.IngressClassName
		ic, ok := c.byName[name]
		if !ok {
			return Classification{Problem: fmt.Sprintf("IngressClass %q does not exist", name)}
		}
		return c.fromClass(ic)
	}
	if name, ok := ing.Annotations[AnnotationLegacyIngressClass]; ok && name != "" {
		if ic, ok := c.byName[name]; ok {
			return c.fromClass(ic)
		}
		// Before IngressClass objects existed the annotation held the controller's class
		// name, "nginx" or "traefik" by default, and both controllers still honour it.
		switch strings.ToLower(name) {
		case "nginx":
			return Classification{Kind: Nginx, Controller: DefaultNginxController}
		case "traefik":
			return Classification{Kind: Traefik, Controller: DefaultTraefikController}
		}
		return Classification{Problem: fmt.Sprintf("annotation %s: %q names no IngressClass", AnnotationLegacyIngressClass, name)}
	}
	switch len(c.defaults) {
	case 0:
		return Classification{Problem: "no ingressClassName and no default IngressClass"}
	case 1:
		return c.fromClass(c.byName[c.defaults[0]])
	default:
		return Classification{Problem: fmt.Sprintf("no ingressClassName and %d default IngressClasses (%s)", len(c.defaults), strings.Join(c.defaults, ", "))}
	}
}

func (c *Classifier) fromClass(ic *networkingv1.IngressClass) Classification {
	cl := Classification{Kind: c.kindOf(ic.Spec.Controller), Controller: ic.Spec.Controller}
	if cl.Kind == Unsupported {
		cl.Problem = fmt.Sprintf("IngressClass %q is served by %q, which claimguard does not wire", ic.Name, ic.Spec.Controller)
	}
	return cl
}
