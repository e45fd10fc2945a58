package proxytest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"
)

// Config describes one guarded route: requests to the proxy are checked by
// AuthURL and, when allowed, sent to Upstream with ResponseHeaders copied
// from the auth response. For nginx an empty AuthURL means no check at all.
type Config struct {
	// AuthURL is the forward-auth endpoint, such as
	// http://127.0.0.1:8443/authz/shop/orders-api.
	AuthURL string
	// ResponseHeaders are the auth response headers copied onto the
	// upstream request (the policy's forwardClaims headers).
	ResponseHeaders []string
	// Upstream is the host:port of the application.
	Upstream string
	// Listen is the host:port the proxy listens on; empty picks a free
	// loopback port.
	Listen string
	// Workers is nginx's worker_processes (default 1).
	Workers int
}

// Proxy is a running proxy process.
type Proxy struct {
	// URL is the proxy's base URL, such as http://127.0.0.1:41234.
	URL  string
	Dir  string
	Name string
	cmd  *exec.Cmd
	done chan struct{}
	logs *bytes.Buffer
}

type templateData struct {
	Config
	Dir              string
	AuthHost         string
	AuthHostPort     string
	AuthPath         string
	UpstreamHostPort string
}

// repoRoot finds the repository root from this file's location.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// FreeAddr returns a loopback host:port that was free a moment ago.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// headerVar turns a header name into nginx's $upstream_http_ variable suffix.
func headerVar(h string) string {
	return strings.ReplaceAll(strings.ToLower(h), "-", "_")
}

// Render writes the named template of hack/proxy (nginx.conf.tmpl or
// Caddyfile.tmpl) for cfg into dir and returns the file path.
func Render(name string, cfg Config, dir string) (string, error) {
	// An empty AuthURL renders nginx without auth_request (an Ingress that is
	// not wired); Caddy always needs one.
	u := &url.URL{}
	if cfg.AuthURL != "" || name != "nginx.conf.tmpl" {
		var err error
		u, err = url.Parse(cfg.AuthURL)
		if err != nil || u.Host == "" {
			return "", fmt.Errorf("auth URL %q: not an absolute URL", cfg.AuthURL)
		}
	}
	if cfg.Workers == 0 {
		cfg.Workers = 1
	}
	tmpl, err := template.New(name).Funcs(template.FuncMap{"headerVar": headerVar}).
		ParseFiles(filepath.Join(repoRoot(), "hack", "proxy", name))
	if err != nil {
		return "", err
	}
	path := u.EscapedPath()
	if u.RawQuery != "" {
		path += "?" + u.RawQuery
	}
	data := templateData{
		Config:           cfg,
		Dir:              dir,
		AuthHost:         u.Hostname(),
		AuthHostPort:     u.Host,
		AuthPath:         path,
		UpstreamHostPort: cfg.Upstream,
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, data); err != nil {
		return "", err
	}
	out := filepath.Join(dir, strings.TrimSuffix(name, ".tmpl"))
	return out, os.WriteFile(out, buf.Bytes(), 0o644)
}

// StartNginx starts nginx configured as ingress-nginx configures auth-url.
func StartNginx(cfg Config) (*Proxy, error) {
	return start("nginx", "nginx.conf.tmpl", cfg, func(conf, dir string) *exec.Cmd {
		return exec.Command("nginx", "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log"))
	})
}

// StartCaddy starts caddy with forward_auth.
func StartCaddy(cfg Config) (*Proxy, error) {
	return start("caddy", "Caddyfile.tmpl", cfg, func(conf, dir string) *exec.Cmd {
		cmd := exec.Command("caddy", "run", "--config", conf, "--adapter", "caddyfile")
		cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
		return cmd
	})
}

func start(name, tmpl string, cfg Config, command func(conf, dir string) *exec.Cmd) (*Proxy, error) {
	if _, err := exec.LookPath(name); err != nil {
		return nil, fmt.Errorf("%s is not installed (run .ci/run or apt-get install %s): %w", name, name, err)
	}
	if cfg.Listen == "" {
		addr, err := FreeAddr()
		if err != nil {
			return nil, err
		}
		cfg.Listen = addr
	}
	dir, err := os.MkdirTemp("", "claimguard-"+name+"-")
	if err != nil {
		return nil, err
	}
	conf, err := Render(tmpl, cfg, dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	p := &Proxy{URL: "http://" + cfg.Listen, Dir: dir, Name: name, done: make(chan struct{}), logs: &bytes.Buffer{}}
	p.cmd = command(conf, dir)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	// Its own process group, so Stop also reaches nginx's workers.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", cfg.Listen, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return p, nil
		}
		select {
		case <-p.done:
			logs := p.Logs()
			os.RemoveAll(dir)
			return nil, fmt.Errorf("%s exited at start: %s", name, logs)
		default:
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("%s did not listen on %s within 15s: %s", name, cfg.Listen, p.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Logs returns what the proxy printed, and nginx's error log.
func (p *Proxy) Logs() string {
	s := p.logs.String()
	if b, err := os.ReadFile(filepath.Join(p.Dir, "error.log")); err == nil {
		s += string(b)
	}
	return s
}

// Stop stops the proxy and removes its files.
func (p *Proxy) Stop() {
	if p.cmd.Process != nil {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	}
	os.RemoveAll(p.Dir)
}

// Upstream is a real HTTP application behind the proxy. It answers every
// request with 200 and a JSON echo of the request, and counts requests.
type Upstream struct {
	Addr string
	srv  *http.Server
	mu   sync.Mutex
	hits int
}

// Echo is what the Upstream answers.
type Echo struct {
	Method string              `json:"method"`
	URI    string              `json:"uri"`
	Header map[string][]string `json:"header"`
}

// StartUpstream starts an Upstream on a free loopback port.
func StartUpstream() (*Upstream, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	u := &Upstream{Addr: l.Addr().String()}
	u.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.hits++
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(Echo{Method: r.Method, URI: r.RequestURI, Header: r.Header})
	})}
	go func() { _ = u.srv.Serve(l) }()
	return u, nil
}

// Hits returns how many requests reached the upstream.
func (u *Upstream) Hits() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.hits
}

// Close stops the upstream.
func (u *Upstream) Close() { _ = u.srv.Close() }
