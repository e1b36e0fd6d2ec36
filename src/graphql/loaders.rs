//! DataLoaders batch the per-row lookups of one request into one query.

use std::collections::HashMap;

use async_graphql::dataloader::{DataLoader, Loader};
use uuid::Uuid;

use crate::{
    db::PgPool,
    error::AppError,
    users::{self, User},
};

pub struct UserLoader {
    db: PgPool,
}

impl UserLoader {
    pub fn for_request(db: PgPool) -> DataLoader<Self> {
        DataLoader::new(Self { db }, tokio::spawn)
    }
}

impl Loader<Uuid> for UserLoader {
    type Value = User;
    type Error = AppError;

    async fn load(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, User>, AppError> {
        let mut conn = self.db.get().await?;
        let found = users::find_many(&mut conn, ids).await?;
        Ok(found.into_iter().map(|user| (user.id, user)).collect())
    }
}
