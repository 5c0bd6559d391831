// Package auth owns who may talk to a strata broker and what they may do:
// principals, bearer tokens (a token file of hashed tokens), mutual-TLS
// identities, ACLs kept in the bucket, the gRPC interceptors that enforce
// them on every RPC (streams included), the broker's TLS certificates
// (reloaded when their files change) and per-principal byte-rate quotas.
// docs/security.md is the operator's guide.
//
// The model:
//   - A principal is a name. It comes from a bearer token (the
//     "authorization: Bearer <token>" metadata; the token file maps each
//     token's SHA-256 to its principal) or, without a token, from the
//     client certificate the broker verified (ClientCertPrincipal: the
//     subject's common name, else the first URI, DNS or e-mail SAN).
//   - An ACL grants a principal (or "*", every authenticated principal)
//     operations (produce, consume, describe, admin) on resources: topics
//     or groups by exact name or by prefix, or the cluster. admin implies
//     the other three on the same resources; produce and consume imply
//     describe.
//   - Each RPC's needs are a Rule, keyed by its full method name
//     (StrataRules for the broker's API, StandardRules for health and
//     reflection): what the request names, which operation on it, and
//     whether the answer is filtered to what the principal may describe.
//
// Invariants:
//   - Once enforcement is on (Config.Enforce), an RPC reaches its handler
//     only if its caller is authenticated and every Access its Rule names
//     is allowed; a request whose principal has no matching allow ACL
//     reaches no core call. Default deny: no ACL, no access; a method with
//     no Rule is refused (PERMISSION_DENIED), never let through. On a
//     stream the rule is checked on every message the client sends,
//     before the handler sees it.
//   - Super users (Config.SuperUsers, the --super-users flag) bypass ACLs:
//     that is how the first admin exists in a cluster with no ACLs yet.
//   - A token is never logged, never put in an error, never stored: only
//     its SHA-256 is kept and compared. A token file with a plaintext token
//     in it, or one that does not parse, is an error at start.
//   - ACLs change only through meta.CAS on meta.ACLKey, so every broker
//     converges on one set; a broker re-reads them at most RefreshInterval
//     after another broker's change (at once after its own), and keeps the
//     last set it read when the bucket cannot be read: it never fails open.
//   - Refusals say who was refused, for which operation on which resource
//     (PERMISSION_DENIED) or why the caller is not authenticated
//     (UNAUTHENTICATED), and are logged with the principal and the reason.
//   - A principal over its quota is slowed (the broker waits before it
//     handles a produce, and after it sends a fetch response), never
//     failed, except by the caller's own deadline.
//
// Concurrency: Guard, ACLStore, Quotas and CertReloader are safe for
// concurrent use. ACLStore.Start's refresh goroutine is stopped by Close.
package auth
