//! The long-lived services of a process, built once (by `main`, or a test)
//! and handed to whoever needs them: the proxy server, the scheduler, the
//! admin socket and the CLI all share the same store, connector, restore
//! runner and snapshot service.

use std::sync::Arc;

use crate::config::Live;
use crate::net::tls::TlsSetupError;
use crate::restore::Restores;
use crate::snapshot::{Service, ServiceError};
use crate::store::Store;
use crate::upstream::Connector;

#[derive(Debug, thiserror::Error)]
pub enum ServicesError {
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    #[error(transparent)]
    Snapshots(#[from] ServiceError),
}

pub struct Services {
    /// The configuration now; a reload (SIGHUP) replaces it.
    pub config: Live,
    pub store: Arc<Store>,
    pub connector: Arc<Connector>,
    pub restores: Arc<Restores>,
    pub snapshots: Arc<Service>,
}

impl Services {
    pub fn new(config: Live, store: Arc<Store>) -> Result<Self, ServicesError> {
        let own = store.clone();
        let connector = Arc::new(
            Connector::from_config(&config.get())?
                .with_own_inbox(Arc::new(move |user| own.own_inbox(user).ok().flatten())),
        );
        let restores = Arc::new(Restores::new(config.clone(), store.clone(), connector.clone()));
        let snapshots = Arc::new(Service::new(config.clone(), store.clone(), connector.clone())?);
        Ok(Self {
            config,
            store,
            connector,
            restores,
            snapshots,
        })
    }
}
