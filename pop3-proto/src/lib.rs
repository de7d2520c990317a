//! Sans-IO POP3.
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod client;
pub mod command;
pub mod dot;
pub mod line;
mod parse;
pub mod response;
pub mod session;
pub mod store;
pub mod time;
pub mod types;
