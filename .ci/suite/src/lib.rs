//! The pop3-rs workspace's tests that need several adapters at once; never
//! published. Each published crate's own tests need nothing but its package
//! and its published dependencies; what pairs runtimes lives here:
//!
//! * `tests/suite/`: the behavioural suite, written once against a small
//!   facade that each runtime implements, and run for every pair in
//!   `tests/*_runtime_suite.rs` (tokio, smol, async-std and blocking, each
//!   client against its own server and against another runtime's);
//! * the top-level README's examples, compiled as doctests below;
//! * `benches/e2e/`: the end-to-end benchmark of every runtime's examples
//!   against real peers (`cargo bench -p pop3-suite --bench e2e`).
#![forbid(unsafe_code)]

// The top-level README's examples use every adapter: they are compiled
// here, where every adapter is at hand.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
