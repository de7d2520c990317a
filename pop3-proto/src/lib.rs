//! Sans-IO POP3.
//!
//! A server starts from [`server::Server`] (one per connection, configured by
//! [`server::ServerConfig`]) and a [`store::StoreDriver`] over any
//! [`store::Store`]; the run loop and the rules a caller follows are in the
//! [`server`] module docs.
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod client;
pub mod command;
pub mod dot;
pub mod line;
pub mod response;
pub mod server;
pub mod session;
pub mod store;
pub mod time;
pub mod types;

#[cfg(feature = "arbitrary")]
mod arbitrary_impls;
mod parse;
