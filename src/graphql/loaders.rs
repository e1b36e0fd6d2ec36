//! DataLoaders batch the per-row lookups of one request into one query per table.

use std::collections::HashMap;

use async_graphql::dataloader::{DataLoader, Loader};
use uuid::Uuid;

use crate::{
    competitions::{self, Competition},
    db::PgPool,
    error::AppError,
    users::{self, User},
};

/// Loads rows by id for one request.
pub struct DbLoader {
    db: PgPool,
}

impl DbLoader {
    pub fn for_request(db: PgPool) -> DataLoader<Self> {
        DataLoader::new(Self { db }, tokio::spawn)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserId(pub Uuid);

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CompetitionId(pub Uuid);

impl Loader<UserId> for DbLoader {
    type Value = User;
    type Error = AppError;

    async fn load(&self, ids: &[UserId]) -> Result<HashMap<UserId, User>, AppError> {
        let ids: Vec<Uuid> = ids.iter().map(|id| id.0).collect();
        let found = users::find_many(&mut *self.db.get().await?, &ids).await?;
        Ok(found
            .into_iter()
            .map(|user| (UserId(user.id), user))
            .collect())
    }
}

impl Loader<CompetitionId> for DbLoader {
    type Value = Competition;
    type Error = AppError;

    async fn load(
        &self,
        ids: &[CompetitionId],
    ) -> Result<HashMap<CompetitionId, Competition>, AppError> {
        let ids: Vec<Uuid> = ids.iter().map(|id| id.0).collect();
        let found = competitions::find_many(&mut *self.db.get().await?, &ids).await?;
        Ok(found
            .into_iter()
            .map(|competition| (CompetitionId(competition.id), competition))
            .collect())
    }
}
