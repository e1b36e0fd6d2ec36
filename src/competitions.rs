//! Competitions: creation rules and listing with keyset (cursor) pagination.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Datelike, TimeDelta, Utc};
use diesel::{
    pg::Pg,
    prelude::*,
    sql_types::{BigInt, Bool, Text, Timestamptz, Uuid as SqlUuid},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::{
    auth::Claims,
    db::prepared,
    error::{AppError, AppResult, bad_input, violates},
    schema::competitions,
    users::{Role, User},
    validation,
};

const MAX_TAGS: usize = 20;
const CAPACITY: std::ops::RangeInclusive<i32> = 1..=1_000_000;
pub const MAX_PAGE_SIZE: i64 = 100;

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
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
        let start_date = match self.start_date {
            Some(start_date) => start_date,
            None => validation::date_plus("startDate", self.reg_deadline, TimeDelta::days(1))?,
        };
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
    let created = diesel::insert_into(competitions::table)
        .values(&row)
        .returning(Competition::as_returning())
        .get_result(conn)
        .await;
    match created {
        Err(error) if violates(&error, "competitions_organizer_id_fkey") => {
            Err(AppError::ACCOUNT_GONE)
        }
        created => Ok(created?),
    }
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
    /// Before every competition: the first page.
    const START: Self = Self {
        created_at: DateTime::<Utc>::MAX_UTC,
        id: Uuid::max(),
    };

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
        // Cursors hold creation times; chrono accepts years Postgres would refuse.
        let created_at = DateTime::from_timestamp_micros(micros)
            .filter(|at| (1..=9999).contains(&at.year()))
            .ok_or_else(invalid)?;
        Ok(Self {
            created_at,
            id: id.parse().map_err(|_| invalid())?,
        })
    }
}

/// One page of a listing, with the organizers of its competitions (a listing almost always
/// shows them, and reading them in the same statement saves a round trip).
pub struct Page {
    pub items: Vec<Competition>,
    pub organizers: Vec<User>,
    pub has_next_page: bool,
}

/// The open-only filter on `c`, switched by `$1`.
macro_rules! open_only {
    () => {
        "(NOT $1 OR (c.reg_deadline > now() AND c.registered_count < c.capacity))"
    };
}

/// The listing statement with an optional extra condition: `$1` open only, `$2`/`$3` the
/// cursor (created_at, id), `$4` the row limit, then the condition's own parameters. Fixed
/// SQL is prepared once per connection; a diesel boxed query would be re-prepared each time.
macro_rules! listing {
    ($condition:literal) => {
        concat!(
            "SELECT c.id, c.organizer_id, c.title, c.description, c.tags, c.capacity,
                    c.registered_count, c.reg_deadline, c.start_date, c.created_at,
                    u.name AS organizer_name, u.email AS organizer_email,
                    u.role AS organizer_role, u.created_at AS organizer_created_at
               FROM competitions c JOIN users u ON u.id = c.organizer_id
              WHERE ",
            open_only!(),
            " AND (c.created_at, c.id) < ($2, $3) ",
            $condition,
            " ORDER BY c.created_at DESC, c.id DESC LIMIT $4"
        )
    };
}

/// How many competitions a filter matches: `$1` open only, then the condition's parameters.
macro_rules! counting {
    ($condition:literal) => {
        concat!(
            "SELECT count(*) AS n FROM competitions c WHERE ",
            open_only!(),
            " ",
            $condition
        )
    };
}

const LIST_ALL: &str = listing!("");
const LIST_TAGGED: &str = listing!("AND c.tags @> ARRAY[$5::text]");
const COUNT_ALL: &str = counting!("");
const COUNT_TAGGED: &str = counting!("AND c.tags @> ARRAY[$2::text]");

#[derive(QueryableByName)]
struct ListedRow {
    #[diesel(embed)]
    competition: Competition,
    #[diesel(sql_type = Text)]
    organizer_name: String,
    #[diesel(sql_type = Text)]
    organizer_email: String,
    #[diesel(sql_type = Text)]
    organizer_role: Role,
    #[diesel(sql_type = Timestamptz)]
    organizer_created_at: DateTime<Utc>,
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
    let after = after.unwrap_or(Cursor::START);
    let query = prepared(if filter.tag.is_some() {
        LIST_TAGGED
    } else {
        LIST_ALL
    })
    .bind::<Bool, _>(filter.open_only)
    .bind::<Timestamptz, _>(after.created_at)
    .bind::<SqlUuid, _>(after.id)
    .bind::<BigInt, _>(first + 1);
    let rows: Vec<ListedRow> = match &filter.tag {
        Some(tag) => query.bind::<Text, _>(tag.clone()),
        None => query,
    }
    .load(conn)
    .await?;
    let has_next_page = rows.len() as i64 > first;
    let (items, organizers) = rows
        .into_iter()
        .take(first as usize)
        .map(|row| {
            let organizer = User {
                id: row.competition.organizer_id,
                name: row.organizer_name,
                email: row.organizer_email,
                role: row.organizer_role,
                created_at: row.organizer_created_at,
            };
            (row.competition, organizer)
        })
        .unzip();
    Ok(Page {
        items,
        organizers,
        has_next_page,
    })
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

pub async fn count(conn: &mut AsyncPgConnection, filter: &Filter) -> AppResult<i64> {
    let query = match &filter.tag {
        Some(tag) => prepared(COUNT_TAGGED)
            .bind::<Bool, _>(filter.open_only)
            .bind::<Text, _>(tag.clone()),
        None => prepared(COUNT_ALL).bind::<Bool, _>(filter.open_only),
    };
    Ok(query.get_result::<Count>(conn).await?.n)
}

pub async fn find_many(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> AppResult<Vec<Competition>> {
    Ok(competitions::table
        .filter(competitions::id.eq_any(ids))
        .select(Competition::as_select())
        .load(conn)
        .await?)
}
