//! The behavioural suite every runtime runs (tests/suite), here: the
//! blocking client against the blocking server, over the memory store and
//! over the PostgreSQL store.

#[path = "suite/blocking_rt.rs"]
mod blocking_rt;
#[path = "suite/pg_backend.rs"]
mod pg_backend;
#[path = "support/pg_cluster.rs"]
mod pg_cluster;
mod suite;

use blocking_rt::Blocking;
use pg_backend::Pg;

runtime_suite!(
    blocking_against_blocking,
    client = Blocking,
    server = Blocking
);

// The scenarios that concern the store, over the PostgreSQL store (a
// database per scenario): on each server runtime once, with its own client.
runtime_suite!(
    blocking_against_blocking_over_postgres,
    client = Blocking,
    server = Blocking,
    store = Pg
);
