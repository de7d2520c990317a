//! `pop3d-blocking`: a POP3 server on blocking `std::net`, a thread per
//! connection.
//!
//! With no arguments it serves an embedded demo maildrop (user `demo`,
//! password `demo`) on 127.0.0.1:1110, offering STLS with a certificate made
//! at start; `--help` lists the options (shared by every runtime's `pop3d`).

use std::process::ExitCode;
use std::sync::Arc;

use pop3_blocking::cli::{BoxError, ServerArgs, ServerSetup, ServerStore};
use pop3_blocking::server::{Pop3Server, Security};
use pop3_proto::store::{Inline, OffloadStore, Store};

fn main() -> ExitCode {
    pop3_blocking::cli::init_logging();
    let result = match ServerArgs::parse_for("pop3d-blocking").setup("pop3d-blocking") {
        Ok((mut setup, ServerStore::Demo(store))) => serve(store, &mut setup),
        Ok((mut setup, ServerStore::Maildir(store))) => {
            serve(OffloadStore::<_, Inline>::new(store), &mut setup)
        }
        #[cfg(feature = "postgres")]
        Ok((mut setup, ServerStore::Postgres(store))) => {
            serve(OffloadStore::<_, Inline>::new(store), &mut setup)
        }
        Ok(_) => Err("this build cannot serve that store".into()),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pop3d-blocking: {}", pop3_blocking::cli::chain(&*e));
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
    .with_metrics(setup.start_metrics("pop3d-blocking")?)
    .with_gate(setup.gate.clone());
    let stop = server.clone();
    setup.handle_signals(move || stop.shutdown())?;
    let mut bound = Vec::new();
    let mut listeners = Vec::new();
    for bound_listener in setup.take_listeners() {
        let security = if bound_listener.tls {
            Security::ImplicitTls
        } else {
            Security::Plain
        };
        bound.push((bound_listener.listener.local_addr()?, bound_listener.tls));
        listeners.push((bound_listener.listener, security, bound_listener.proxy));
    }
    setup.print_banner("pop3d-blocking", &bound);
    std::thread::scope(|scope| {
        let server = &server;
        let serving: Vec<_> = listeners
            .into_iter()
            .map(|(listener, security, proxy)| {
                scope.spawn(move || server.serve_proxied(listener, security, proxy))
            })
            .collect();
        for serving in serving {
            serving
                .join()
                .map_err(|_| "a listener's thread panicked")??;
        }
        server.wait_idle();
        Ok(())
    })
}
