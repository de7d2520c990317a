//! A SCRAM mechanism that reports where its key derivation runs, for the
//! test that checks that the derivation leaves the polling thread. (Each
//! async adapter's tests hold their own copy, so that the crate's package
//! tests on its own.)

use std::sync::Arc;

use pop3_proto::client::sasl::{ClientMechanism, SaslError, SaslWork, SaslWorkDone, Scram};
use pop3_proto::types::{Mechanism, Secret};

/// SCRAM-SHA-256 whose key derivation first calls `hook` on the thread it
/// runs on.
pub struct Watched {
    pub inner: Scram,
    pub hook: Arc<dyn Fn() + Send + Sync>,
}

impl ClientMechanism for Watched {
    fn name(&self) -> Mechanism {
        self.inner.name()
    }
    fn initial_response(&mut self) -> Option<Secret> {
        self.inner.initial_response()
    }
    fn step(&mut self, challenge: &[u8]) -> Result<Secret, SaslError> {
        self.inner.step(challenge)
    }
    fn step_work(&mut self, challenge: &[u8]) -> Result<Option<SaslWork>, SaslError> {
        let Some(work) = self.inner.step_work(challenge)? else {
            return Ok(None);
        };
        let hook = self.hook.clone();
        Ok(Some(SaslWork::new(move || {
            hook();
            work.clone().run().into_output()
        })))
    }
    fn finish_step(&mut self, done: SaslWorkDone) -> Result<Secret, SaslError> {
        self.inner.finish_step(done)
    }
    fn is_complete(&self) -> bool {
        self.inner.is_complete()
    }
}
