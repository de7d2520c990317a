//! The behavioural suite every runtime runs (tests/suite),
//! here: the tokio client against the tokio server and against the
//! blocking server, and the blocking client against the tokio server.

#[path = "suite/blocking_rt.rs"]
mod blocking_rt;
#[path = "suite/pg_backend.rs"]
mod pg_backend;
#[path = "support/pg_cluster.rs"]
mod pg_cluster;
#[path = "suite/mod.rs"]
mod suite;
#[path = "suite/tokio_rt.rs"]
mod tokio_rt;

use blocking_rt::Blocking;
use pg_backend::Pg;
use tokio_rt::Tokio;

runtime_suite!(tokio_against_tokio, client = Tokio, server = Tokio);
runtime_suite!(tokio_against_blocking, client = Tokio, server = Blocking);
runtime_suite!(blocking_against_tokio, client = Blocking, server = Tokio);

// The scenarios that concern the store, over the PostgreSQL store (a
// database per scenario): on each server runtime once, with its own client.
runtime_suite!(
    tokio_against_tokio_over_postgres,
    client = Tokio,
    server = Tokio,
    store = Pg
);
