// Package policy compiles a JWTPolicy spec into an immutable evaluator that
// decides forward-auth requests (allow with forwarded claim headers, or deny
// with a contract reason code), explains its decisions step by step, and caches
// verified tokens.
//
// Compile does everything that can fail or costs time once: defaults, every
// validation the CRD schema cannot express, key sets (through package keys),
// CEL programs, regular expressions, claim paths, canonical header names,
// algorithm allow-lists as bitsets and the WWW-Authenticate values of the
// denials. Decide then runs the contract's checks in order (public path,
// token source, size cap, structure, issuer, alg, key, signature, exp/nbf/iat,
// aud, required claims, rules) on a token it splits and decodes itself, with
// a strict JSON parser of its own, so that the first failure is the reason and
// no input can make it panic. Explain runs the same code with a trace
// recorder; Decide passes a nil recorder, which costs a branch per step.
package policy
