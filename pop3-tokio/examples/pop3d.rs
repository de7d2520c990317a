//! `pop3d`: a POP3 server on tokio.
//!
//! With no arguments it serves an embedded demo maildrop (user `demo`,
//! password `demo`) on 127.0.0.1:1110, offering STLS with a certificate made
//! at start; `--help` lists the options (shared by every runtime's `pop3d`).

use std::process::ExitCode;
use std::sync::Arc;

use pop3_blocking::cli::{BoxError, ServerArgs, ServerSetup, ServerStore};
use pop3_proto::store::Store;
use pop3_tokio::SpawnBlocking;
use pop3_tokio::server::{Pop3Server, Security};

#[tokio::main]
async fn main() -> ExitCode {
    pop3_blocking::cli::init_logging();
    // The setup blocks (a database store connects with a blocking client,
    // which must not run on a reactor thread).
    let setup = tokio::task::block_in_place(|| ServerArgs::parse_for("pop3d").setup("pop3d"));
    let result = match setup {
        Ok((mut setup, ServerStore::Demo(store))) => serve(store, &mut setup).await,
        Ok((mut setup, ServerStore::Maildir(store))) => {
            serve(SpawnBlocking::new(store), &mut setup).await
        }
        #[cfg(feature = "postgres")]
        Ok((mut setup, ServerStore::Postgres(store))) => {
            serve(SpawnBlocking::new(store), &mut setup).await
        }
        Ok(_) => Err("this build cannot serve that store".into()),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pop3d: {}", pop3_blocking::cli::chain(&*e));
            pop3_blocking::cli::exit_status(&e)
        }
    }
}

async fn serve<S: Store + 'static>(store: S, setup: &mut ServerSetup) -> Result<(), BoxError> {
    let tls = Some(setup.tls.clone());
    let server = Pop3Server::build(
        Arc::new(store),
        setup.config.clone(),
        tls,
        setup.options.clone(),
    )
    .with_metrics(setup.start_metrics("pop3d")?)
    .with_gate(setup.gate.clone());
    let stop = server.clone();
    setup.handle_signals(move || stop.shutdown())?;
    let mut tasks = tokio::task::JoinSet::new();
    let mut bound = Vec::new();
    for bound_listener in setup.take_listeners() {
        let security = if bound_listener.tls {
            Security::ImplicitTls
        } else {
            Security::Plain
        };
        let proxy = bound_listener.proxy;
        bound_listener.listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(bound_listener.listener)?;
        bound.push((listener.local_addr()?, bound_listener.tls));
        let server = server.clone();
        tasks.spawn(async move { server.serve_proxied(listener, security, proxy).await });
    }
    setup.print_banner("pop3d", &bound);
    // Every loop ends at the shutdown (or one fails: then stop the others).
    while let Some(res) = tasks.join_next().await {
        if let Err(e) = res
            .map_err(BoxError::from)
            .and_then(|r| r.map_err(BoxError::from))
        {
            server.shutdown();
            server.wait_idle().await;
            return Err(e);
        }
    }
    server.wait_idle().await;
    Ok(())
}
