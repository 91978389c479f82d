//! Where a command goes: the running daemon's control socket, or — with no daemon — the
//! engine itself, opened under the state lock with the registry refreshed first.

use super::*;

/// Where commands go.
pub(super) enum Backend {
    Daemon(PathBuf),
    Local(Arc<Engine>, #[allow(dead_code)] StateLock),
}

impl Backend {
    /// Connects to the daemon, or opens the registry under the state lock; `refresh`
    /// reconciles the registry with the disk first (no daemon keeps it current).
    pub(super) async fn open(
        cfg: Config,
        needs_daemon: bool,
        refresh: bool,
    ) -> Result<Backend, Failure> {
        let socket = cfg.daemon.socket.clone();
        match client::connect(&socket).await {
            Ok(_) => return Ok(Backend::Daemon(socket)),
            Err(e) if needs_daemon => {
                return Err(Failure::new(
                    exit::UNAVAILABLE,
                    format!("the daemon is not running ({e})"),
                ));
            }
            Err(_) => {}
        }
        let lock = StateLock::acquire(&cfg.daemon.state_dir).map_err(|e| match e {
            StateError::Busy { pid, .. } => Failure::new(
                exit::UNAVAILABLE,
                format!("mediaretain (pid {pid}) holds the state directory but its socket {} does not answer; is it still starting?", socket.display()),
            ),
            e => Failure::new(exit::CANTCREAT, e.to_string()),
        })?;
        let engine = Arc::new(Engine::open(cfg, Arc::new(SystemClock), false)?);
        if refresh {
            let _bar = Bar::show(engine.progress());
            let e = engine.clone();
            tokio::task::spawn_blocking(move || e.scan_all())
                .await
                .expect("scan task")?;
            // No daemon hashes in the background: files of dedupe classes with a same-size
            // sibling are hashed now (at the configured rate), so the command sees copies.
            let e = engine.clone();
            tokio::task::spawn_blocking(move || {
                e.hash_pending(&std::sync::atomic::AtomicBool::new(false))
            })
            .await
            .expect("hash task")?;
        }
        Ok(Backend::Local(engine, lock))
    }

    /// Shows the progress of the engine's work while the answer comes (no daemon only:
    /// the daemon's work is its own).
    pub(super) fn progress(&self) -> Option<Bar> {
        match self {
            Backend::Daemon(_) => None,
            Backend::Local(e, _) => Bar::show(e.progress()),
        }
    }

    pub(super) async fn ask<T, B>(
        &self,
        method: Method,
        uri: &str,
        body: Option<&B>,
        local: impl FnOnce(&Engine) -> Result<T, EngineError> + Send + 'static,
    ) -> Result<T, Failure>
    where
        T: DeserializeOwned + Send + 'static,
        B: Serialize,
    {
        match self {
            Backend::Daemon(socket) => {
                let stream = client::connect(socket).await?;
                Ok(client::call(stream, socket, method, uri, body).await?)
            }
            Backend::Local(engine, _) => {
                let e = engine.clone();
                Ok(tokio::task::spawn_blocking(move || local(&e))
                    .await
                    .expect("engine task")?)
            }
        }
    }
}
