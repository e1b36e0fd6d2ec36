//! What resolvers need from the request context: the app state, the caller, a connection.

use std::{future::Future, net::IpAddr};

use async_graphql::{Context, dataloader::DataLoader};

use super::loaders::DbLoader;
use crate::{
    auth::Claims,
    db::Lent,
    error::{AppError, AppResult},
    state::AppState,
};

/// The verified claims of the bearer token, if the request carried one.
pub struct Viewer(pub Option<Claims>);

/// The request's `Idempotency-Key` header, if any.
pub struct IdempotencyKeyHeader(pub Option<String>);

/// The client's address (behind a trusted proxy: from `X-Forwarded-For`).
pub struct ClientAddress(pub IpAddr);

pub trait ContextExt {
    fn state(&self) -> &AppState;

    /// The authenticated caller, or `UNAUTHENTICATED`.
    fn caller(&self) -> AppResult<&Claims>;

    fn idempotency_key_header(&self) -> Option<&str>;

    fn client_address(&self) -> IpAddr;

    fn loader(&self) -> &DataLoader<DbLoader>;

    fn db(&self) -> impl Future<Output = AppResult<Lent<'_>>> + Send;
}

impl ContextExt for Context<'_> {
    fn state(&self) -> &AppState {
        self.data_unchecked::<AppState>()
    }

    fn caller(&self) -> AppResult<&Claims> {
        self.data_unchecked::<Viewer>()
            .0
            .as_ref()
            .ok_or(AppError::Unauthenticated("Authentication required"))
    }

    fn idempotency_key_header(&self) -> Option<&str> {
        self.data_unchecked::<IdempotencyKeyHeader>().0.as_deref()
    }

    fn client_address(&self) -> IpAddr {
        self.data_unchecked::<ClientAddress>().0
    }

    fn loader(&self) -> &DataLoader<DbLoader> {
        self.data_unchecked::<DataLoader<DbLoader>>()
    }

    async fn db(&self) -> AppResult<Lent<'_>> {
        Ok(self.state().db.get().await?)
    }
}
