//! A blocking store whose maildrops report the thread they are dropped
//! on: the async adapters' tests use it to check that releasing a maildrop
//! (which may close files and release a lock) leaves the polling thread.
//! Included with `#[path]` by those tests.
#![allow(dead_code)]

use std::sync::mpsc::Sender;
use std::sync::{Mutex, mpsc};
use std::thread::{self, ThreadId};

use bytes::Bytes;
use pop3_proto::store::{
    BlockingMaildrop, BlockingMessageReader, BlockingStore, CredentialForms, MessageInfo,
    StoreError, Update,
};
use pop3_proto::types::{Secret, Uid};

/// `alice` (password `secret`) with one message; each maildrop sends the
/// thread it is dropped on.
pub struct DropWatch {
    dropped: Mutex<Sender<ThreadId>>,
}

impl DropWatch {
    /// The store, and where the threads arrive.
    pub fn new() -> (DropWatch, mpsc::Receiver<ThreadId>) {
        let (tx, rx) = mpsc::channel();
        let store = DropWatch {
            dropped: Mutex::new(tx),
        };
        (store, rx)
    }
}

impl BlockingStore for DropWatch {
    type Maildrop = Watched;

    fn credential_forms(&self) -> CredentialForms {
        CredentialForms::new(true, false)
    }

    fn verify_password(&self, user: &str, password: &Secret) -> Result<bool, StoreError> {
        Ok(user == "alice" && password.expose() == b"secret")
    }

    fn shared_secret(&self, _user: &str) -> Result<Option<Secret>, StoreError> {
        Ok(None)
    }

    fn open(&self, _user: &str) -> Result<Watched, StoreError> {
        Ok(Watched {
            messages: vec![MessageInfo {
                size: 5,
                uid: Uid::new("only").unwrap(),
            }],
            dropped: self.dropped.lock().unwrap().clone(),
        })
    }
}

/// A maildrop that reports where it is dropped.
pub struct Watched {
    messages: Vec<MessageInfo>,
    dropped: Sender<ThreadId>,
}

impl Drop for Watched {
    fn drop(&mut self) {
        let _ = self.dropped.send(thread::current().id());
    }
}

impl BlockingMaildrop for Watched {
    type Reader = Once;

    fn messages(&self) -> &[MessageInfo] {
        &self.messages
    }

    fn read(&mut self, _index: usize) -> Result<Once, StoreError> {
        Ok(Once(Some(Bytes::from_static(b"x\r\n"))))
    }

    fn commit(self, _update: Update) -> Result<(), StoreError> {
        Ok(())
    }
}

/// One chunk, then the end.
pub struct Once(Option<Bytes>);

impl BlockingMessageReader for Once {
    fn next_chunk(&mut self) -> Result<Option<Bytes>, StoreError> {
        Ok(self.0.take())
    }
}
