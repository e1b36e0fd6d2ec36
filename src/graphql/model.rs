//! GraphQL output and input types: thin views over the domain types.

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject, dataloader::DataLoader};
use chrono::{DateTime, Utc};

use super::{context::ContextExt, loaders::UserLoader};
use crate::{
    auth::NewAccount,
    competitions::{self, Competition, Cursor, Filter, NewCompetition, Page},
    error::internal,
    users::{self, User},
};

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(name = "Role", remote = "users::Role")]
pub enum RoleView {
    Participant,
    Organizer,
}

fn id(uuid: uuid::Uuid) -> ID {
    ID(uuid.to_string())
}

pub struct UserView(pub User);

#[Object(name = "User")]
impl UserView {
    async fn id(&self) -> ID {
        id(self.0.id)
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn email(&self) -> &str {
        &self.0.email
    }
    async fn role(&self) -> RoleView {
        self.0.role.into()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

#[derive(SimpleObject)]
pub struct AuthPayload {
    pub token: String,
    pub user: UserView,
}

#[derive(InputObject)]
pub struct SignupInput {
    pub name: String,
    pub email: String,
    pub password: String,
    pub role: RoleView,
}

impl From<SignupInput> for NewAccount {
    fn from(input: SignupInput) -> Self {
        Self {
            name: input.name,
            email: input.email,
            password: input.password,
            role: input.role.into(),
        }
    }
}

#[derive(InputObject)]
pub struct LoginInput {
    pub email: String,
    pub password: String,
}

#[derive(InputObject)]
pub struct CreateCompetitionInput {
    pub title: String,
    pub description: String,
    #[graphql(default_with = "Some(Vec::new())")]
    pub tags: Option<Vec<String>>,
    pub capacity: i32,
    pub reg_deadline: DateTime<Utc>,
    /// Default: regDeadline + 1 day; must be after regDeadline.
    pub start_date: Option<DateTime<Utc>>,
}

impl From<CreateCompetitionInput> for NewCompetition {
    fn from(input: CreateCompetitionInput) -> Self {
        Self {
            title: input.title,
            description: input.description,
            tags: input.tags.unwrap_or_default(),
            capacity: input.capacity,
            reg_deadline: input.reg_deadline,
            start_date: input.start_date,
        }
    }
}

pub struct CompetitionView(pub Competition);

#[Object(name = "Competition")]
impl CompetitionView {
    async fn id(&self) -> ID {
        id(self.0.id)
    }
    async fn title(&self) -> &str {
        &self.0.title
    }
    async fn description(&self) -> &str {
        &self.0.description
    }
    async fn tags(&self) -> &[String] {
        &self.0.tags
    }
    async fn capacity(&self) -> i32 {
        self.0.capacity
    }
    async fn registered_count(&self) -> i32 {
        self.0.registered_count
    }
    async fn seats_left(&self) -> i32 {
        self.0.seats_left()
    }
    /// Before the registration deadline and with a seat left.
    async fn is_open(&self) -> bool {
        self.0.is_open(Utc::now())
    }
    async fn reg_deadline(&self) -> DateTime<Utc> {
        self.0.reg_deadline
    }
    async fn start_date(&self) -> DateTime<Utc> {
        self.0.start_date
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn organizer(&self, ctx: &Context<'_>) -> async_graphql::Result<UserView> {
        let organizer = ctx
            .data_unchecked::<DataLoader<UserLoader>>()
            .load_one(self.0.organizer_id)
            .await?
            .ok_or_else(|| {
                internal(format!("organizer of competition {} is missing", self.0.id))
            })?;
        Ok(UserView(organizer))
    }
}

#[derive(SimpleObject)]
pub struct PageInfo {
    pub has_next_page: bool,
    pub end_cursor: Option<String>,
}

#[derive(SimpleObject)]
pub struct CompetitionEdge {
    pub cursor: String,
    pub node: CompetitionView,
}

/// One page of a listing; `totalCount` is counted only when asked for.
pub struct CompetitionConnection {
    pub page: Page,
    pub filter: Filter,
}

#[Object]
impl CompetitionConnection {
    async fn edges(&self) -> Vec<CompetitionEdge> {
        self.page
            .items
            .iter()
            .map(|competition| CompetitionEdge {
                cursor: Cursor::of(competition).encode(),
                node: CompetitionView(competition.clone()),
            })
            .collect()
    }

    async fn page_info(&self) -> PageInfo {
        PageInfo {
            has_next_page: self.page.has_next_page,
            end_cursor: self.page.items.last().map(|last| Cursor::of(last).encode()),
        }
    }

    /// How many competitions match the filter, on all pages.
    async fn total_count(&self, ctx: &Context<'_>) -> async_graphql::Result<i64> {
        let mut conn = ctx.db().await?;
        Ok(competitions::count(&mut conn, &self.filter).await?)
    }
}
