//! Sans-IO POP3.
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod command;
pub mod dot;
pub mod line;
pub mod response;
pub mod session;
pub mod store;
pub mod time;
pub mod types;

#[cfg(feature = "arbitrary")]
mod arbitrary_impls;
mod parse;
