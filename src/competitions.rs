//! Competitions: creation rules and listing with keyset (cursor) pagination.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Duration, Utc};
use diesel::{pg::Pg, prelude::*};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::{
    auth::Claims,
    error::{AppError, AppResult, bad_input},
    schema::competitions,
    users::Role,
    validation,
};

const MAX_TAGS: usize = 20;
const CAPACITY: std::ops::RangeInclusive<i32> = 1..=1_000_000;
pub const MAX_PAGE_SIZE: i64 = 100;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = competitions, check_for_backend(Pg))]
pub struct Competition {
    pub id: Uuid,
    pub organizer_id: Uuid,
    pub title: String,
    pub description: String,
    pub tags: Vec<String>,
    pub capacity: i32,
    pub registered_count: i32,
    pub reg_deadline: DateTime<Utc>,
    pub start_date: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

impl Competition {
    pub fn seats_left(&self) -> i32 {
        self.capacity - self.registered_count
    }

    /// Open: before the deadline and with a seat left.
    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        now < self.reg_deadline && self.seats_left() > 0
    }
}

pub struct NewCompetition {
    pub title: String,
    pub description: String,
    pub tags: Vec<String>,
    pub capacity: i32,
    pub reg_deadline: DateTime<Utc>,
    pub start_date: Option<DateTime<Utc>>,
}

#[derive(Insertable)]
#[diesel(table_name = competitions)]
pub struct CompetitionRow {
    pub id: Uuid,
    pub organizer_id: Uuid,
    pub title: String,
    pub description: String,
    pub tags: Vec<String>,
    pub capacity: i32,
    pub reg_deadline: DateTime<Utc>,
    pub start_date: DateTime<Utc>,
}

impl NewCompetition {
    /// Applies API.md's rules; the start date defaults to one day after the deadline.
    pub fn validate(self, id: Uuid, organizer_id: Uuid) -> AppResult<CompetitionRow> {
        let title = validation::text("title", &self.title, 1, 200)?;
        let description = validation::text("description", &self.description, 0, 5_000)?;
        if self.tags.len() > MAX_TAGS {
            return Err(bad_input(format!("at most {MAX_TAGS} tags")));
        }
        let mut tags = Vec::with_capacity(self.tags.len());
        for tag in &self.tags {
            let tag = validation::text("tag", tag, 1, 40)?;
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        if !CAPACITY.contains(&self.capacity) {
            return Err(bad_input("capacity must be between 1 and 1000000"));
        }
        if self.reg_deadline <= Utc::now() {
            return Err(bad_input("regDeadline must be in the future"));
        }
        let start_date = self
            .start_date
            .unwrap_or(self.reg_deadline + Duration::days(1));
        if start_date <= self.reg_deadline {
            return Err(bad_input("startDate must be after regDeadline"));
        }
        Ok(CompetitionRow {
            id,
            organizer_id,
            title,
            description,
            tags,
            capacity: self.capacity,
            reg_deadline: self.reg_deadline,
            start_date,
        })
    }
}

/// Organizers only.
pub async fn create(
    conn: &mut AsyncPgConnection,
    caller: &Claims,
    input: NewCompetition,
) -> AppResult<Competition> {
    if caller.role != Role::Organizer {
        return Err(AppError::Forbidden(
            "only organizers can create competitions",
        ));
    }
    let row = input.validate(Uuid::new_v4(), caller.sub)?;
    Ok(diesel::insert_into(competitions::table)
        .values(&row)
        .returning(Competition::as_returning())
        .get_result(conn)
        .await?)
}

pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> AppResult<Option<Competition>> {
    Ok(competitions::table
        .find(id)
        .select(Competition::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Which competitions a listing shows.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub tag: Option<String>,
    pub open_only: bool,
}

/// Position after a competition in the listing order (`created_at DESC, id DESC`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    created_at: DateTime<Utc>,
    id: Uuid,
}

impl Cursor {
    pub fn of(competition: &Competition) -> Self {
        Self {
            created_at: competition.created_at,
            id: competition.id,
        }
    }

    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!(
            "{}:{}",
            self.created_at.timestamp_micros(),
            self.id
        ))
    }

    pub fn decode(raw: &str) -> AppResult<Self> {
        let invalid = || bad_input("after is not a valid cursor");
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let (micros, id) = text.split_once(':').ok_or_else(invalid)?;
        let micros = micros.parse::<i64>().map_err(|_| invalid())?;
        Ok(Self {
            created_at: DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?,
            id: id.parse().map_err(|_| invalid())?,
        })
    }
}

pub struct Page {
    pub items: Vec<Competition>,
    pub has_next_page: bool,
}

type BoxedListing<'a> = competitions::BoxedQuery<'a, Pg>;

fn filtered(filter: &Filter) -> BoxedListing<'_> {
    let mut query = competitions::table.into_boxed();
    if let Some(tag) = &filter.tag {
        query = query.filter(competitions::tags.contains(vec![tag.clone()]));
    }
    if filter.open_only {
        query = query
            .filter(competitions::reg_deadline.gt(Utc::now()))
            .filter(competitions::registered_count.lt(competitions::capacity));
    }
    query
}

/// One page of at most `first` competitions after `after`, newest first.
pub async fn list(
    conn: &mut AsyncPgConnection,
    filter: &Filter,
    first: i64,
    after: Option<Cursor>,
) -> AppResult<Page> {
    if !(0..=MAX_PAGE_SIZE).contains(&first) {
        return Err(bad_input(format!("first must be 0 to {MAX_PAGE_SIZE}")));
    }
    let mut query = filtered(filter);
    if let Some(after) = after {
        query = query.filter(
            competitions::created_at
                .lt(after.created_at)
                .or(competitions::created_at
                    .eq(after.created_at)
                    .and(competitions::id.lt(after.id))),
        );
    }
    let mut items = query
        .order((competitions::created_at.desc(), competitions::id.desc()))
        .limit(first + 1)
        .select(Competition::as_select())
        .load(conn)
        .await?;
    let has_next_page = items.len() as i64 > first;
    items.truncate(first as usize);
    Ok(Page {
        items,
        has_next_page,
    })
}

pub async fn count(conn: &mut AsyncPgConnection, filter: &Filter) -> AppResult<i64> {
    Ok(filtered(filter).count().get_result(conn).await?)
}

pub async fn find_many(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> AppResult<Vec<Competition>> {
    Ok(competitions::table
        .filter(competitions::id.eq_any(ids))
        .select(Competition::as_select())
        .load(conn)
        .await?)
}
