//! What resolvers need from the request context: the app state, the caller, a connection.

use std::future::Future;

use async_graphql::Context;
use diesel_async::{AsyncPgConnection, pooled_connection::bb8::PooledConnection};

use crate::{
    auth::Claims,
    error::{AppError, AppResult},
    startup::AppState,
};

/// The verified claims of the bearer token, if the request carried one.
pub struct Viewer(pub Option<Claims>);

pub trait ContextExt {
    fn state(&self) -> &AppState;

    /// The authenticated caller, or `UNAUTHENTICATED`.
    fn caller(&self) -> AppResult<&Claims>;

    fn db(&self)
    -> impl Future<Output = AppResult<PooledConnection<'_, AsyncPgConnection>>> + Send;
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

    async fn db(&self) -> AppResult<PooledConnection<'_, AsyncPgConnection>> {
        Ok(self.state().db.get().await?)
    }
}
