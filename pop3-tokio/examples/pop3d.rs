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
    let result = match ServerArgs::parse_for("pop3d").setup("pop3d") {
        Ok((setup, ServerStore::Demo(store))) => serve(store, &setup).await,
        Ok((setup, ServerStore::Maildir(store))) => serve(SpawnBlocking::new(store), &setup).await,
        #[cfg(feature = "postgres")]
        Ok((setup, ServerStore::Postgres(store))) => serve(SpawnBlocking::new(store), &setup).await,
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

async fn serve<S: Store + 'static>(store: S, setup: &ServerSetup) -> Result<(), BoxError> {
    let tls = Some(setup.tls.clone());
    let server = Pop3Server::build(
        Arc::new(store),
        setup.config.clone(),
        tls,
        setup.options.clone(),
    )
    .with_metrics(setup.start_metrics("pop3d")?);
    let mut tasks = tokio::task::JoinSet::new();
    let mut bound = Vec::new();
    for (addrs, security) in [
        (&setup.listen, Security::Plain),
        (&setup.tls_listen, Security::ImplicitTls),
    ] {
        for addr in addrs {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            bound.push((listener.local_addr()?, security == Security::ImplicitTls));
            let server = server.clone();
            tasks.spawn(async move { server.serve(listener, security).await });
        }
    }
    setup.print_banner("pop3d", &bound);
    tokio::select! {
        _ = tokio::signal::ctrl_c() => println!("pop3d: shutting down"),
        Some(res) = tasks.join_next() => res??,
    }
    server.shutdown();
    server.wait_idle().await;
    Ok(())
}
