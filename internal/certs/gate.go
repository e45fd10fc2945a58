package certs

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/webhook"
)

// Gate returns a webhook server that starts listening only once wait returns, such as when the
// certificate is loaded and the caches have synced. Until then nothing accepts the API server's
// calls (its failurePolicy decides) and the server's StartedChecker reports not ready, instead
// of a listener that fails every handshake or answers from an empty cache.
func Gate(s webhook.Server, wait func(context.Context) error) webhook.Server {
	return &gated{Server: s, wait: wait}
}

type gated struct {
	webhook.Server
	wait func(context.Context) error
}

// Start waits, then runs the wrapped server until ctx ends.
func (g *gated) Start(ctx context.Context) error {
	if err := g.wait(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	return g.Server.Start(ctx)
}
