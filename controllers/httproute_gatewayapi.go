package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/openapi"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/claimguard/claimguard/internal/wiring"
)

// GatewayAPIState is what the API server serves of the Gateway API.
type GatewayAPIState struct {
	// Served: HTTPRoutes (gateway.networking.k8s.io/v1) and ReferenceGrants (v1beta1) are served.
	Served bool
	// ExternalAuth: the served HTTPRoute schema has the ExternalAuth filter, which only the
	// experimental channel of the Gateway API CRDs carries. Without it the API server refuses a
	// route with the filter, so claimguard cannot wire routes.
	ExternalAuth bool
}

// Wirable reports whether claimguard can wire HTTPRoutes.
func (s GatewayAPIState) Wirable() bool { return s.Served && s.ExternalAuth }

// String describes the state for logs and messages.
func (s GatewayAPIState) String() string {
	switch {
	case !s.Served:
		return "not installed"
	case !s.ExternalAuth:
		return "installed without the ExternalAuth filter (standard channel)"
	default:
		return "installed with the ExternalAuth filter"
	}
}

// GatewayAPI tracks whether the Gateway API is served and whether its HTTPRoute schema has the
// ExternalAuth filter. It asks discovery on first use and then periodically, so CRDs installed
// or upgraded from the standard to the experimental channel after the manager started are
// picked up without a restart. The schema is read from the API server's OpenAPI v3 document of
// gateway.networking.k8s.io/v1, which is what the API server validates routes with, and is
// fetched again only when the document's hash changes. It runs on every replica: the admission
// webhooks ask it too.
type GatewayAPI struct {
	disc     discovery.DiscoveryInterface
	interval time.Duration

	mu        sync.Mutex
	checked   bool
	state     GatewayAPIState
	schemaURL string // the OpenAPI path (with its hash) the ExternalAuth answer was read from
	listeners []func(ctx context.Context, s GatewayAPIState)
}

// NewGatewayAPI returns a tracker asking disc every interval (0: 30s).
func NewGatewayAPI(disc discovery.DiscoveryInterface, interval time.Duration) *GatewayAPI {
	if interval <= 0 {
		interval = 30 * time.Second
	}
	return &GatewayAPI{disc: disc, interval: interval}
}

// OnChange registers fn, called from Start with the new state when it changes, and once with
// the first state.
func (g *GatewayAPI) OnChange(fn func(ctx context.Context, s GatewayAPIState)) {
	g.mu.Lock()
	g.listeners = append(g.listeners, fn)
	g.mu.Unlock()
}

// State returns the current state, asking the API server if nobody has yet.
func (g *GatewayAPI) State(ctx context.Context) (GatewayAPIState, error) {
	g.mu.Lock()
	checked, state := g.checked, g.state
	g.mu.Unlock()
	if checked {
		return state, nil
	}
	_, err := g.check(ctx)
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.state, err
}

// ExternalAuthServed reports whether HTTPRoutes can carry the ExternalAuth filter, for the
// admission webhooks.
func (g *GatewayAPI) ExternalAuthServed(ctx context.Context) (bool, error) {
	s, err := g.State(ctx)
	return s.Wirable(), err
}

// check asks the API server and reports whether the answer differs from the last one.
func (g *GatewayAPI) check(ctx context.Context) (bool, error) {
	served, err := g.served()
	if err != nil {
		return false, err
	}
	state := GatewayAPIState{Served: served}
	url := ""
	if served {
		if state.ExternalAuth, url, err = g.externalAuth(ctx); err != nil {
			return false, err
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	changed := !g.checked || g.state != state
	g.checked, g.state, g.schemaURL = true, state, url
	return changed, nil
}

// served asks discovery for HTTPRoute v1 and ReferenceGrant v1beta1.
func (g *GatewayAPI) served() (bool, error) {
	for _, gvk := range []struct{ gv, kind string }{
		{wiring.HTTPRouteGVK.GroupVersion().String(), wiring.HTTPRouteGVK.Kind},
		{wiring.ReferenceGrantGVK.GroupVersion().String(), wiring.ReferenceGrantGVK.Kind},
	} {
		res, err := g.disc.ServerResourcesForGroupVersion(gvk.gv)
		switch {
		case apierrors.IsNotFound(err):
			return false, nil
		case err != nil:
			return false, fmt.Errorf("discover %s: %w", gvk.gv, err)
		}
		if !slices.ContainsFunc(res.APIResources, func(r metav1.APIResource) bool { return r.Kind == gvk.kind && !strings.Contains(r.Name, "/") }) {
			return false, nil
		}
	}
	return true, nil
}

// externalAuth reads the served HTTPRoute schema, unless its OpenAPI document is unchanged
// since the last read, and reports whether it has the ExternalAuth filter.
func (g *GatewayAPI) externalAuth(ctx context.Context) (bool, string, error) {
	gv := wiring.HTTPRouteGVK.GroupVersion()
	paths, err := openapi.ToClientWithContext(g.disc.OpenAPIV3()).PathsWithContext(ctx)
	if err != nil {
		return false, "", fmt.Errorf("list the OpenAPI v3 documents: %w", err)
	}
	doc, ok := paths["apis/"+gv.String()]
	if !ok {
		// Discovery and OpenAPI disagree for a moment right after the CRD is installed.
		return false, "", fmt.Errorf("no OpenAPI v3 document for %s yet", gv)
	}
	url := doc.ServerRelativeURL()
	g.mu.Lock()
	same, last := url == g.schemaURL && g.checked, g.state.ExternalAuth
	g.mu.Unlock()
	if same {
		return last, url, nil
	}
	raw, err := doc.SchemaWithContext(ctx, "application/json")
	if err != nil {
		return false, "", fmt.Errorf("read the OpenAPI v3 document of %s: %w", gv, err)
	}
	found, err := schemaHasExternalAuth(raw)
	if err != nil {
		return false, "", fmt.Errorf("read the HTTPRoute schema of %s: %w", gv, err)
	}
	return found, url, nil
}

// schemaHasExternalAuth reports whether an OpenAPI v3 document of gateway.networking.k8s.io/v1
// has an HTTPRoute whose rule filters accept the type ExternalAuth with its externalAuth
// field. The standard channel's schema lists neither.
func schemaHasExternalAuth(raw []byte) (bool, error) {
	var doc struct {
		Components struct {
			Schemas map[string]*oaSchema `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return false, err
	}
	schemas := doc.Components.Schemas
	var route *oaSchema
	for _, s := range schemas {
		for _, gvk := range s.GVK {
			if gvk.Group == wiring.HTTPRouteGVK.Group && gvk.Version == wiring.HTTPRouteGVK.Version && gvk.Kind == wiring.HTTPRouteGVK.Kind {
				route = s
			}
		}
	}
	if route == nil {
		return false, errors.New("the document has no HTTPRoute schema")
	}
	filter := route.walk(schemas, "spec", "rules", "[]", "filters", "[]")
	if filter == nil {
		return false, errors.New("the HTTPRoute schema has no spec.rules[].filters[]")
	}
	typ := filter.walk(schemas, "type")
	if typ == nil || filter.walk(schemas, "externalAuth") == nil {
		return false, nil
	}
	return slices.Contains(typ.Enum, any("ExternalAuth")), nil
}

// oaSchema is the part of an OpenAPI v3 schema object schemaHasExternalAuth reads.
type oaSchema struct {
	Ref        string               `json:"$ref"`
	AllOf      []*oaSchema          `json:"allOf"`
	Properties map[string]*oaSchema `json:"properties"`
	Items      *oaSchema            `json:"items"`
	Enum       []any                `json:"enum"` // strings, numbers, ...
	GVK        []struct {
		Group, Version, Kind string
	} `json:"x-kubernetes-group-version-kind"`
}

// resolve follows $ref and single-element allOf (the API server wraps references that carry a
// description or default that way) to the schema that holds the properties.
func (s *oaSchema) resolve(schemas map[string]*oaSchema) *oaSchema {
	for range 8 {
		switch {
		case s == nil:
			return nil
		case s.Ref != "":
			s = schemas[strings.TrimPrefix(s.Ref, "#/components/schemas/")]
		case len(s.AllOf) == 1 && s.Properties == nil && s.Items == nil:
			s = s.AllOf[0]
		default:
			return s
		}
	}
	return nil
}

// walk descends through properties by name, and into array items for "[]".
func (s *oaSchema) walk(schemas map[string]*oaSchema, path ...string) *oaSchema {
	cur := s.resolve(schemas)
	for _, p := range path {
		if cur == nil {
			return nil
		}
		if p == "[]" {
			cur = cur.Items.resolve(schemas)
		} else {
			cur = cur.Properties[p].resolve(schemas)
		}
	}
	return cur
}

// Start checks every interval until ctx ends and tells the OnChange listeners about changes.
func (g *GatewayAPI) Start(ctx context.Context) error {
	log := ctrl.LoggerFrom(ctx).WithName("gateway-api")
	t := time.NewTicker(g.interval)
	defer t.Stop()
	first := true
	for {
		changed, err := g.check(ctx)
		if err != nil {
			log.V(1).Info("Discovery of the Gateway API failed; retrying", "error", err.Error())
		}
		g.mu.Lock()
		state, fns := g.state, slices.Clone(g.listeners)
		g.mu.Unlock()
		// The first check always reports, so watches start when the CRDs are already there.
		if (changed || first) && err == nil {
			log.Info("Gateway API", "state", state.String())
			for _, fn := range fns {
				fn(ctx, state)
			}
			first = false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// NeedLeaderElection is false: the admission webhooks of every replica ask the tracker.
func (g *GatewayAPI) NeedLeaderElection() bool { return false }

var _ manager.LeaderElectionRunnable = (*GatewayAPI)(nil)
