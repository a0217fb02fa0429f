//! Forwarding upstream against the upstream double: batching, faults, outages, the outbox cap,
//! TLS, and the TLS policy of the dependency tree.

mod deps;
mod esl;
mod forwarding;
mod full_outbox;
mod outage;
mod outbox_cap;
mod tls;
