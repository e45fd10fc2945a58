package proxytest

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// Reload renders cfg over the running nginx's configuration and reloads it
// with `nginx -s reload`, as ingress-nginx does when an Ingress changes. The
// listen address stays the one nginx started with. The configuration is
// checked with `nginx -t` first, so a bad one is an error here instead of a
// line in the error log. nginx switches to the new configuration
// asynchronously: callers poll for the behaviour they expect.
func (p *Proxy) Reload(cfg Config) error {
	if p.Name != "nginx" {
		return fmt.Errorf("reload: only nginx can be reloaded, not %s", p.Name)
	}
	cfg.Listen = strings.TrimPrefix(p.URL, "http://")
	conf, err := Render("nginx.conf.tmpl", cfg, p.Dir)
	if err != nil {
		return err
	}
	errLog := filepath.Join(p.Dir, "error.log")
	for _, args := range [][]string{{"-t"}, {"-s", "reload"}} {
		cmd := exec.Command("nginx", append([]string{"-p", p.Dir, "-c", conf, "-e", errLog}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("nginx %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}
