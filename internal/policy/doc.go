// Package policy compiles a JWTPolicy spec into an immutable evaluator that
// decides forward-auth requests (allow with forwarded claim headers, or deny
// with a contract reason code), explains its decisions step by step, and caches
// verified tokens.
package policy
