// Package proxytest runs real reverse proxies (Debian's nginx and caddy) in
// front of a forward-auth endpoint for end-to-end tests and benchmarks,
// configured from the templates in hack/proxy.
package proxytest
