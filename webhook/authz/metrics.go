package authz

import (
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/claimguard/claimguard/internal/keys"
	"github.com/claimguard/claimguard/internal/policy"
	"github.com/claimguard/claimguard/internal/store"
)

// Outcomes of a forward-auth decision, the "outcome" label of
// claimguard_authz_decisions_total.
const (
	OutcomeAllow  = "allow"
	OutcomeDeny   = "deny"
	OutcomeAudit  = "audit"
	OutcomePublic = "public"
)

// Metrics are the Prometheus metrics of the forward-auth server, the key
// fetcher, the verified-token cache and the snapshot feed.
//
// Label cardinality is bounded by construction: namespace and policy label
// values are only ever those of policies present in the current snapshot
// (a request for anything else is counted under namespace="" and policy=""),
// reason is one of the contract's fixed codes, and source is a configured
// JWKS URL. Series of a policy that leaves the snapshot are deleted.
type Metrics struct {
	decisions *prometheus.CounterVec
	duration  prometheus.Histogram

	refreshes   *prometheus.CounterVec
	keysLoaded  *prometheus.GaugeVec
	keysSkipped *prometheus.GaugeVec
	keysStale   *prometheus.GaugeVec
	lastRefresh *prometheus.GaugeVec

	policies         *prometheus.GaugeVec
	reloads          *prometheus.CounterVec
	lastReloadOK     prometheus.Gauge
	lastReloadTime   prometheus.Gauge
	lastReloadOKTime prometheus.Gauge

	cache atomic.Pointer[policy.Cache]

	// unknown counts requests for policies outside the snapshot, with
	// empty namespace and policy labels.
	unknown prometheus.Counter
}

// NewMetrics creates the metrics and registers them with reg (a fresh
// registry in serve, controller-runtime's metrics.Registry in the manager).
// It fails when they are already registered there.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "claimguard_authz_decisions_total",
			Help: "Forward-auth decisions by policy, outcome (allow, deny, audit, public) and reason code.",
		}, []string{"namespace", "policy", "outcome", "reason"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "claimguard_authz_duration_seconds",
			Help: "Time spent answering a forward-auth request, from routing to the written status.",
			// 25µs (a cached allow) to about 0.8s (a first fetch of keys).
			Buckets: prometheus.ExponentialBuckets(25e-6, 2, 16),
		}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "claimguard_keys_refresh_total",
			Help: "Refreshes of remote key sets by source URL and result (success, failure).",
		}, []string{"source", "result"}),
		keysLoaded: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "claimguard_keys_loaded",
			Help: "Usable keys of a remote key set after its last successful refresh.",
		}, []string{"source"}),
		keysSkipped: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "claimguard_keys_skipped",
			Help: "Keys of a remote key set that were skipped (encryption keys, weak or malformed keys) at its last refresh.",
		}, []string{"source"}),
		keysStale: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "claimguard_keys_stale",
			Help: "1 when the last refresh of a remote key set failed and the previously loaded set is still served.",
		}, []string{"source"}),
		lastRefresh: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "claimguard_keys_last_refresh_success_timestamp_seconds",
			Help: "Unix time of the last successful refresh of a remote key set.",
		}, []string{"source"}),
		policies: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "claimguard_snapshot_policies",
			Help: "Policies in the snapshot being served, by state (compiled, invalid).",
		}, []string{"state"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "claimguard_policy_reloads_total",
			Help: "Attempts to reload the policies (serve: the policy file) by result (success, failure).",
		}, []string{"result"}),
		lastReloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "claimguard_policy_last_reload_success",
			Help: "1 when the last reload of the policies succeeded; 0 when it failed and the previous policies stay in force.",
		}),
		lastReloadTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "claimguard_policy_last_reload_timestamp_seconds",
			Help: "Unix time of the last reload attempt.",
		}),
		lastReloadOKTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "claimguard_policy_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful reload.",
		}),
	}
	m.unknown = m.decisions.WithLabelValues("", "", OutcomeDeny, string(policy.PolicyNotFound))
	for _, c := range []prometheus.Collector{
		m.decisions, m.duration, m.refreshes, m.keysLoaded, m.keysSkipped, m.keysStale,
		m.lastRefresh, m.policies, m.reloads, m.lastReloadOK, m.lastReloadTime, m.lastReloadOKTime,
		cacheCollector{m},
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// SetCache makes the cache collector report c (hits, misses, evictions,
// entries, bytes). nil stops reporting.
func (m *Metrics) SetCache(c *policy.Cache) { m.cache.Store(c) }

// ObserveReload records a reload attempt of the policies: err nil means the
// new snapshot was published; otherwise the previous one stays in force.
// The gauges are set before the counter moves, so whoever sees the attempt
// counted sees its outcome too.
func (m *Metrics) ObserveReload(err error) {
	now := float64(time.Now().UnixNano()) / 1e9
	m.lastReloadTime.Set(now)
	if err != nil {
		m.lastReloadOK.Set(0)
		m.reloads.WithLabelValues("failure").Inc()
		return
	}
	m.lastReloadOK.Set(1)
	m.lastReloadOKTime.Set(now)
	m.reloads.WithLabelValues("success").Inc()
}

// observeSnapshot sets the policy gauges for a published snapshot.
func (m *Metrics) observeSnapshot(snap *store.Snapshot) {
	m.policies.WithLabelValues("compiled").Set(float64(snap.Len()))
	m.policies.WithLabelValues("invalid").Set(float64(len(snap.InvalidKeys())))
}

// forgetPolicy deletes every decision series of a policy that left the
// snapshot, so removed policies do not accumulate series.
func (m *Metrics) forgetPolicy(k store.Key) {
	m.decisions.DeletePartialMatch(prometheus.Labels{"namespace": k.Namespace, "policy": k.Name})
}

// KeysObserver returns the keys.Observer to give keys.FetcherOptions: it
// updates the key metrics and logs failed refreshes (never key material; the
// source URL carries no credentials).
func (m *Metrics) KeysObserver(log logr.Logger) keys.Observer {
	return keys.ObserverFunc(func(ev keys.RefreshEvent) {
		src := ev.Source
		if ev.Err != nil {
			m.refreshes.WithLabelValues(src, "failure").Inc()
			stale := 0.0
			if ev.Stale {
				stale = 1
			}
			m.keysStale.WithLabelValues(src).Set(stale)
			log.Error(ev.Err, "Refreshing a remote key set failed", "source", src, "trigger", ev.Trigger, "stale", ev.Stale)
			return
		}
		m.refreshes.WithLabelValues(src, "success").Inc()
		m.keysLoaded.WithLabelValues(src).Set(float64(ev.Keys))
		m.keysSkipped.WithLabelValues(src).Set(float64(len(ev.Skipped)))
		m.keysStale.WithLabelValues(src).Set(0)
		m.lastRefresh.WithLabelValues(src).SetToCurrentTime()
		if len(ev.Skipped) > 0 {
			for _, sk := range ev.Skipped {
				log.V(1).Info("Skipped a key of a remote key set", "source", src, "index", sk.Index, "kid", sk.KID, "why", sk.Reason)
			}
		}
		log.V(2).Info("Refreshed a remote key set", "source", src, "trigger", ev.Trigger, "keys", ev.Keys, "skipped", len(ev.Skipped), "duration", ev.Duration)
	})
}

// cacheCollector reads policy.Cache.Stats at scrape time, so the request path
// pays nothing for cache metrics.
type cacheCollector struct{ m *Metrics }

var (
	cacheHitsDesc      = prometheus.NewDesc("claimguard_cache_hits_total", "Verified-token cache hits.", nil, nil)
	cacheMissesDesc    = prometheus.NewDesc("claimguard_cache_misses_total", "Verified-token cache misses.", nil, nil)
	cacheEvictionsDesc = prometheus.NewDesc("claimguard_cache_evictions_total", "Verified-token cache entries dropped (expired or over the bounds).", nil, nil)
	cacheEntriesDesc   = prometheus.NewDesc("claimguard_cache_entries", "Entries in the verified-token cache.", nil, nil)
	cacheBytesDesc     = prometheus.NewDesc("claimguard_cache_bytes", "Approximate memory of the verified-token cache.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c cacheCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{cacheHitsDesc, cacheMissesDesc, cacheEvictionsDesc, cacheEntriesDesc, cacheBytesDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c cacheCollector) Collect(ch chan<- prometheus.Metric) {
	cache := c.m.cache.Load()
	if cache == nil {
		return
	}
	st := cache.Stats()
	ch <- prometheus.MustNewConstMetric(cacheHitsDesc, prometheus.CounterValue, float64(st.Hits))
	ch <- prometheus.MustNewConstMetric(cacheMissesDesc, prometheus.CounterValue, float64(st.Misses))
	ch <- prometheus.MustNewConstMetric(cacheEvictionsDesc, prometheus.CounterValue, float64(st.Evictions))
	ch <- prometheus.MustNewConstMetric(cacheEntriesDesc, prometheus.GaugeValue, float64(st.Size))
	ch <- prometheus.MustNewConstMetric(cacheBytesDesc, prometheus.GaugeValue, float64(st.Bytes))
}
