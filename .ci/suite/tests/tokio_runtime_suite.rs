//! The behavioural suite every runtime runs (tests/suite),
//! here: the tokio client against the tokio server and against the
//! blocking server, and the blocking client against the tokio server.

#[path = "suite/blocking_rt.rs"]
mod blocking_rt;
#[path = "suite/mod.rs"]
mod suite;
#[path = "suite/tokio_rt.rs"]
mod tokio_rt;

use blocking_rt::Blocking;
use tokio_rt::Tokio;

runtime_suite!(tokio_against_tokio, client = Tokio, server = Tokio);
runtime_suite!(tokio_against_blocking, client = Tokio, server = Blocking);
runtime_suite!(blocking_against_tokio, client = Blocking, server = Tokio);
