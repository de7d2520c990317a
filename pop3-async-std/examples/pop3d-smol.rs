//! `pop3d-smol`: a POP3 server on smol (the same code runs on async-std).
//!
//! With no arguments it serves an embedded demo maildrop (user `demo`,
//! password `demo`) on 127.0.0.1:1110, offering STLS with a certificate made
//! at start; `--help` lists the options (shared by every runtime's `pop3d`).

use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::Arc;

use pop3_async_std::Unblock;
use pop3_async_std::server::{Async, Pop3Server, Security};
use pop3_blocking::cli::{BoxError, ServerArgs, ServerSetup, ServerStore};
use pop3_proto::store::Store;

fn main() -> ExitCode {
    pop3_blocking::cli::init_logging();
    let result = match ServerArgs::parse_for("pop3d-smol").setup("pop3d-smol") {
        Ok((mut setup, ServerStore::Demo(store))) => serve(store, &mut setup),
        Ok((mut setup, ServerStore::Maildir(store))) => serve(Unblock::new(store), &mut setup),
        #[cfg(feature = "postgres")]
        Ok((mut setup, ServerStore::Postgres(store))) => serve(Unblock::new(store), &mut setup),
        Ok(_) => Err("this build cannot serve that store".into()),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pop3d-smol: {}", pop3_blocking::cli::chain(&*e));
            pop3_blocking::cli::exit_status(&e)
        }
    }
}

fn serve<S: Store + 'static>(store: S, setup: &mut ServerSetup) -> Result<(), BoxError> {
    let tls = Some(setup.tls.clone());
    let server = Pop3Server::build(
        Arc::new(store),
        setup.config.clone(),
        tls,
        setup.options.clone(),
    )
    .with_metrics(setup.start_metrics("pop3d-smol")?)
    .with_gate(setup.gate.clone());
    let stop = server.clone();
    setup.handle_signals(move || stop.shutdown())?;
    let mut bound = Vec::new();
    let mut loops = Vec::new();
    for bound_listener in setup.take_listeners() {
        let security = if bound_listener.tls {
            Security::ImplicitTls
        } else {
            Security::Plain
        };
        let proxy = bound_listener.proxy;
        let listener = Async::<TcpListener>::new(bound_listener.listener)?;
        bound.push((listener.get_ref().local_addr()?, bound_listener.tls));
        let server = server.clone();
        loops.push(smol::spawn(async move {
            server.serve_proxied(listener, security, proxy).await
        }));
    }
    setup.print_banner("pop3d-smol", &bound);
    smol::block_on(async {
        for serving in loops {
            serving.await?;
        }
        server.wait_idle().await;
        Ok(())
    })
}
