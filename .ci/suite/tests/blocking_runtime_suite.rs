//! The behavioural suite every runtime runs (tests/suite), here: the
//! blocking client against the blocking server.

#[path = "suite/blocking_rt.rs"]
mod blocking_rt;
mod suite;

use blocking_rt::Blocking;

runtime_suite!(
    blocking_against_blocking,
    client = Blocking,
    server = Blocking
);
