//! The behavioural suite every runtime runs (tests/suite),
//! here: the client on smol against the server on smol, the same on
//! async-std, and each against another runtime's server (smol's client
//! against tokio's server, async-std's against the blocking server).

#[path = "suite/async_rt.rs"]
mod async_rt;
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

use async_rt::{AsyncStd, OnAsync, Smol};
use blocking_rt::Blocking;
use pg_backend::Pg;
use tokio_rt::Tokio;

runtime_suite!(smol_against_smol, client = OnAsync<Smol>, server = OnAsync<Smol>);
runtime_suite!(async_std_against_async_std, client = OnAsync<AsyncStd>, server = OnAsync<AsyncStd>);
runtime_suite!(smol_against_tokio, client = OnAsync<Smol>, server = Tokio);
runtime_suite!(async_std_against_blocking, client = OnAsync<AsyncStd>, server = Blocking);

// The scenarios that concern the store, over the PostgreSQL store (a
// database per scenario): on each server runtime once, with its own client.
runtime_suite!(smol_against_smol_over_postgres, client = OnAsync<Smol>, server = OnAsync<Smol>, store = Pg);
runtime_suite!(async_std_against_async_std_over_postgres, client = OnAsync<AsyncStd>, server = OnAsync<AsyncStd>, store = Pg);
