//! Invariant 1 at compile time: agent code cannot put a destructive or hand-made command on a
//! device link.
//!
//! This crate depends on `device-protocols` exactly as the agent does (without the `raw`
//! feature), and its test `no_raw_send` compiles small programs with `trybuild`: each tries
//! one way to write a delete, a clear or raw bytes (a raw ZK code or packet, forged request
//! bytes, an AiFace delete command or a hand-written text frame) and must fail to compile; one
//! program doing what the agent does (a `Request` and a `Command`) must compile, so the
//! failures are the API's and not a broken harness. It is its own crate so that the test
//! compiles against the agent's feature set alone: in a workspace build, the protocol crate's
//! own tests enable `raw`.
