//! The suite's facade for pop3-async-std: [`OnAsync`] and its client behind
//! blocking calls, on smol ([`Smol`]) or async-std ([`AsyncStd`]).

use std::future::Future;
use std::io::Write;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;

use futures_lite::AsyncReadExt;
use pop3_async_std::client::Pop3Client;
use pop3_async_std::server::{Async, Pop3Server, Security};
use pop3_blocking::common::ConnectOptions;
use pop3_blocking::sink::MaildirSink;
use pop3_proto::client::Error;
use pop3_proto::client::sasl::Plain;
use pop3_proto::command::LangRequest;
use pop3_proto::fetch::{FetchError, FetchOptions, FetchReport};
use pop3_proto::response::{Capability, ScanLine, StatReply, UidLine};
use pop3_proto::server::{ServerConfig, ServerOptions};
use pop3_proto::store::{BlockingStore, Store};
use pop3_proto::types::{MessageNumber, Secret};

use crate::suite::{Client, Extras, Runtime, Served};

/// What the facade needs of an executor.
pub trait Executor: Send + Sync + 'static {
    /// Runs `future` to completion on this thread.
    fn block_on<T>(future: impl Future<Output = T>) -> T;
    /// Runs `future` in the background.
    fn spawn(future: impl Future<Output = ()> + Send + 'static);
}

/// smol.
pub struct Smol;

impl Executor for Smol {
    fn block_on<T>(future: impl Future<Output = T>) -> T {
        smol::block_on(future)
    }
    fn spawn(future: impl Future<Output = ()> + Send + 'static) {
        smol::spawn(future).detach();
    }
}

/// async-std.
pub struct AsyncStd;

impl Executor for AsyncStd {
    fn block_on<T>(future: impl Future<Output = T>) -> T {
        async_std::task::block_on(future)
    }
    fn spawn(future: impl Future<Output = ()> + Send + 'static) {
        async_std::task::spawn(future);
    }
}

/// pop3-async-std on executor `E`, behind blocking calls.
pub struct OnAsync<E>(PhantomData<E>);

/// The pop3-async-std client, behind blocking calls on `E`.
pub struct AsyncClient<E>(Pop3Client, PhantomData<E>);

impl<E: Executor> Runtime for OnAsync<E> {
    type Client = AsyncClient<E>;

    fn serve_with<S: Store + 'static>(
        store: Arc<S>,
        config: ServerConfig,
        tls: Arc<rustls::ServerConfig>,
        options: ServerOptions,
        extras: Extras,
    ) -> Served
    where
        S::Maildrop: 'static,
    {
        let policy = options.proxy_protocol.clone();
        let mut server = Pop3Server::build(store, config, Some(tls), options);
        if let Some(metrics) = extras.metrics {
            server = server.with_metrics(metrics);
        }
        if let Some(gate) = extras.gate {
            server = server.with_gate(gate);
        }
        let plain = Async::<std::net::TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap();
        let implicit = Async::<std::net::TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap();
        let addrs = (
            plain.get_ref().local_addr().unwrap(),
            implicit.get_ref().local_addr().unwrap(),
        );
        let mut listeners = vec![
            (plain, Security::Plain, policy.clone()),
            (implicit, Security::ImplicitTls, policy),
        ];
        let mut proxied = None;
        if let Some(own) = extras.proxy_listener {
            let listener = Async::<std::net::TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap();
            proxied = Some(listener.get_ref().local_addr().unwrap());
            listeners.push((listener, Security::Plain, Some(own)));
        }
        for (listener, security, proxy) in listeners {
            let server = server.clone();
            E::spawn(async move {
                let _ = server.serve_proxied(listener, security, proxy).await;
            });
        }
        let stop = server.clone();
        Served {
            plain: addrs.0,
            tls: addrs.1,
            proxied,
            shutdown: Box::new(move || stop.shutdown()),
            wait_idle: Box::new(move || E::block_on(server.wait_idle())),
        }
    }

    fn serve_blocking<S: BlockingStore>(
        store: S,
        config: ServerConfig,
        tls: Arc<rustls::ServerConfig>,
        options: ServerOptions,
    ) -> Served {
        Self::serve(
            Arc::new(pop3_async_std::Unblock::new(store)),
            config,
            tls,
            options,
        )
    }

    fn connect(addr: SocketAddr, options: ConnectOptions) -> Result<AsyncClient<E>, Error> {
        E::block_on(Pop3Client::connect("127.0.0.1", addr.port(), options))
            .map(|c| AsyncClient(c, PhantomData))
    }
}

impl<E: Executor> Client for AsyncClient<E> {
    fn capa(&mut self) -> Result<Vec<Capability>, Error> {
        E::block_on(self.0.capa())
    }
    fn capabilities(&self) -> Option<Vec<Capability>> {
        self.0.capabilities().map(<[_]>::to_vec)
    }
    fn is_tls(&self) -> bool {
        self.0.is_tls()
    }
    fn is_pipelining(&self) -> bool {
        self.0.is_pipelining()
    }
    fn has_timestamp(&self) -> bool {
        self.0.greeting().is_some_and(|g| g.timestamp.is_some())
    }
    fn login(&mut self, user: &str, password: &str) -> Result<(), Error> {
        E::block_on(self.0.login(user, password))
    }
    fn apop(&mut self, user: &str, password: &str) -> Result<(), Error> {
        E::block_on(self.0.apop(user, password))
    }
    fn auth_plain(&mut self, user: &str, password: &str) -> Result<(), Error> {
        let mechanism = Box::new(Plain::new(user, Secret::new(password.as_bytes().to_vec())));
        E::block_on(self.0.auth(mechanism))
    }
    fn stat(&mut self) -> Result<StatReply, Error> {
        E::block_on(self.0.stat())
    }
    fn list(&mut self) -> Result<Vec<ScanLine>, Error> {
        E::block_on(self.0.list())
    }
    fn list_one(&mut self, msg: MessageNumber) -> Result<ScanLine, Error> {
        E::block_on(self.0.list_one(msg))
    }
    fn uidl(&mut self) -> Result<Vec<UidLine>, Error> {
        E::block_on(self.0.uidl())
    }
    fn uidl_one(&mut self, msg: MessageNumber) -> Result<UidLine, Error> {
        E::block_on(self.0.uidl_one(msg))
    }
    fn retr(&mut self, msg: MessageNumber, out: &mut dyn Write) -> Result<u64, Error> {
        E::block_on(async {
            let mut body = self.0.retr(msg).await?;
            let mut n = 0;
            while let Some(chunk) = body.next_chunk().await? {
                n += chunk.len() as u64;
                out.write_all(&chunk).map_err(Error::io)?;
            }
            assert!(body.is_complete());
            Ok(n)
        })
    }
    fn retr_partly(&mut self, msg: MessageNumber, n: usize) -> Result<Vec<u8>, Error> {
        E::block_on(async {
            let mut body = self.0.retr(msg).await?;
            let mut part = vec![0; n];
            body.read_exact(&mut part).await.map_err(Error::io)?;
            Ok(part)
        })
    }
    fn top(&mut self, msg: MessageNumber, lines: u64) -> Result<Vec<u8>, Error> {
        E::block_on(async {
            let mut out = Vec::new();
            let mut body = self.0.top(msg, lines).await?;
            body.read_to_end(&mut out).await.map_err(Error::io)?;
            Ok(out)
        })
    }
    fn retr_many(
        &mut self,
        msgs: Vec<MessageNumber>,
    ) -> Result<Vec<Result<Vec<u8>, Error>>, Error> {
        E::block_on(async {
            let mut out = Vec::new();
            let mut batch = self.0.retr_many(msgs)?;
            while let Some((_, body)) = batch.next().await {
                out.push(match body {
                    Ok(mut body) => {
                        let mut text = Vec::new();
                        body.read_to_end(&mut text).await.map_err(Error::io)?;
                        Ok(text)
                    }
                    Err(e) => Err(e),
                });
            }
            Ok(out)
        })
    }
    fn dele(&mut self, msg: MessageNumber) -> Result<(), Error> {
        E::block_on(self.0.dele(msg))
    }
    fn dele_many(&mut self, msgs: Vec<MessageNumber>) -> Result<usize, Error> {
        let results = E::block_on(self.0.dele_many(msgs))?;
        Ok(results.iter().filter(|(_, r)| r.is_ok()).count())
    }
    fn rset(&mut self) -> Result<(), Error> {
        E::block_on(self.0.rset())
    }
    fn noop(&mut self) -> Result<(), Error> {
        E::block_on(self.0.noop())
    }
    fn quit(&mut self) -> Result<(), Error> {
        E::block_on(self.0.quit())
    }
    fn utf8(&mut self) -> Result<(), Error> {
        E::block_on(self.0.utf8())
    }
    fn lang(&mut self) -> Result<usize, Error> {
        E::block_on(self.0.lang()).map(|l| l.len())
    }
    fn set_default_lang(&mut self) -> Result<(), Error> {
        E::block_on(self.0.set_lang(LangRequest::Default)).map(drop)
    }
    fn fetch(
        &mut self,
        sink: MaildirSink,
        options: &FetchOptions,
    ) -> (MaildirSink, Result<FetchReport, FetchError>) {
        E::block_on(pop3_async_std::fetch::fetch_new(
            &mut self.0,
            sink,
            options,
            &mut |_| {},
        ))
    }
}

impl<E: Executor> crate::suite::FetchUrl for OnAsync<E> {
    fn fetch_url(
        url: &pop3_proto::url::PopUrl,
        password: &str,
        settings: &pop3_blocking::common::FetchSettings,
        sink: MaildirSink,
    ) -> (MaildirSink, Result<FetchReport, FetchError>) {
        E::block_on(pop3_async_std::fetch::run(
            url,
            password,
            settings,
            sink,
            &mut |_| {},
        ))
    }
}
