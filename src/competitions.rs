//! Competitions: creation rules and listing with keyset (cursor) pagination.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Datelike, TimeDelta, Utc};
use diesel::{
    pg::Pg,
    prelude::*,
    sql_types::{BigInt, Bool, Nullable, Text, Timestamptz, Uuid as SqlUuid},
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::{
    auth::Claims,
    db::{PgPool, prepared},
    error::{AppError, AppResult, bad_input, violates},
    live::{Change, Changes},
    registrations,
    schema::{competitions, registrations as registrations_table},
    users::{Role, User},
    validation,
};

const MAX_TAGS: usize = 20;
/// The longest tag a competition can carry.
const MAX_TAG_CHARS: usize = 40;
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
    pub waitlist_count: i32,
    pub cancelled_at: Option<DateTime<Utc>>,
}

impl Competition {
    pub fn seats_left(&self) -> i32 {
        self.capacity - self.registered_count
    }

    /// Open: not cancelled, before the deadline and with a seat left.
    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        self.cancelled_at.is_none() && now < self.reg_deadline && self.seats_left() > 0
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

/// The rules of API.md, one per field, shared by creating and updating.
fn title(raw: &str) -> AppResult<String> {
    validation::text("title", raw, 1, 200)
}

fn description(raw: &str) -> AppResult<String> {
    validation::text("description", raw, 0, 5_000)
}

/// Trimmed and without repeats.
fn tags(raw: &[String]) -> AppResult<Vec<String>> {
    if raw.len() > MAX_TAGS {
        return Err(bad_input(format!("at most {MAX_TAGS} tags")));
    }
    let mut tags = Vec::with_capacity(raw.len());
    for tag in raw {
        let tag = validation::text("tag", tag, 1, MAX_TAG_CHARS)?;
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    Ok(tags)
}

fn capacity(capacity: i32) -> AppResult<i32> {
    if CAPACITY.contains(&capacity) {
        Ok(capacity)
    } else {
        Err(bad_input("capacity must be between 1 and 1000000"))
    }
}

fn deadline_ahead(reg_deadline: DateTime<Utc>) -> AppResult<DateTime<Utc>> {
    if reg_deadline > Utc::now() {
        Ok(reg_deadline)
    } else {
        Err(bad_input("regDeadline must be in the future"))
    }
}

fn start_after(start_date: DateTime<Utc>, reg_deadline: DateTime<Utc>) -> AppResult<DateTime<Utc>> {
    if start_date > reg_deadline {
        Ok(start_date)
    } else {
        Err(bad_input("startDate must be after regDeadline"))
    }
}

impl NewCompetition {
    /// Applies API.md's rules; the start date defaults to one day after the deadline.
    pub fn validate(self, id: Uuid, organizer_id: Uuid) -> AppResult<CompetitionRow> {
        let reg_deadline = deadline_ahead(self.reg_deadline)?;
        let start_date = match self.start_date {
            Some(start_date) => start_date,
            None => validation::date_plus("startDate", reg_deadline, TimeDelta::days(1))?,
        };
        Ok(CompetitionRow {
            id,
            organizer_id,
            title: title(&self.title)?,
            description: description(&self.description)?,
            tags: tags(&self.tags)?,
            capacity: capacity(self.capacity)?,
            reg_deadline,
            start_date: start_after(start_date, reg_deadline)?,
        })
    }
}

/// An organizer's changes; `None` leaves a field as it is.
#[derive(Default)]
pub struct CompetitionChanges {
    pub title: Option<String>,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    pub capacity: Option<i32>,
    pub reg_deadline: Option<DateTime<Utc>>,
    pub start_date: Option<DateTime<Utc>>,
}

#[derive(AsChangeset)]
#[diesel(table_name = competitions)]
struct ChangedRow {
    title: String,
    description: String,
    tags: Vec<String>,
    capacity: i32,
    reg_deadline: DateTime<Utc>,
    start_date: DateTime<Utc>,
}

impl CompetitionChanges {
    /// The competition as it will be: the create rules on the result, a changed deadline
    /// in the future, and no fewer seats than are taken.
    fn apply(self, current: &Competition) -> AppResult<ChangedRow> {
        let reg_deadline = match self.reg_deadline {
            Some(deadline) if deadline != current.reg_deadline => deadline_ahead(deadline)?,
            _ => current.reg_deadline,
        };
        let capacity = capacity(self.capacity.unwrap_or(current.capacity))?;
        if capacity < current.registered_count {
            return Err(bad_input(format!(
                "capacity cannot go below the {} seats taken",
                current.registered_count
            )));
        }
        Ok(ChangedRow {
            title: self
                .title
                .as_deref()
                .map_or(Ok(current.title.clone()), title)?,
            description: self
                .description
                .as_deref()
                .map_or(Ok(current.description.clone()), description)?,
            tags: self
                .tags
                .as_deref()
                .map_or(Ok(current.tags.clone()), tags)?,
            capacity,
            reg_deadline,
            start_date: start_after(self.start_date.unwrap_or(current.start_date), reg_deadline)?,
        })
    }
}

/// The competition `id`, if `caller` organizes it: `NOT_FOUND`, `FORBIDDEN` otherwise.
async fn owned(
    conn: &mut AsyncPgConnection,
    caller: &Claims,
    id: Uuid,
    locked: bool,
) -> AppResult<Competition> {
    let query = competitions::table
        .find(id)
        .select(Competition::as_select());
    let found = if locked {
        query.for_update().first(conn).await.optional()?
    } else {
        query.first(conn).await.optional()?
    };
    let competition = found.ok_or(AppError::NotFound("competition"))?;
    if competition.organizer_id != caller.sub {
        return Err(AppError::Forbidden(
            "only the competition's organizer can change it",
        ));
    }
    Ok(competition)
}

/// Its organizer's changes. Raising the capacity promotes from the waiting list in the
/// same transaction. Under the row lock: the locking read, the update and the promotion.
pub async fn update(
    db: &PgPool,
    live: &Changes,
    caller: &Claims,
    id: Uuid,
    changes: CompetitionChanges,
) -> AppResult<Competition> {
    let mut conn = db.get().await?;
    // Refused early, without a lock, when it is not the caller's.
    owned(&mut conn, caller, id, false).await?;
    conn.transaction(async |conn| {
        let current = owned(conn, caller, id, true).await?;
        if current.cancelled_at.is_some() {
            return Err(bad_input("a cancelled competition cannot be changed"));
        }
        let row = changes.apply(&current)?;
        let raised = row.capacity > current.capacity;
        let mut updated = diesel::update(competitions::table.find(id))
            .set(&row)
            .returning(Competition::as_returning())
            .get_result(conn)
            .await?;
        let promoted = if raised {
            registrations::promote(conn, id, 0).await?
        } else {
            Vec::new()
        };
        if !promoted.is_empty() {
            updated = find(conn, id)
                .await?
                .ok_or(AppError::NotFound("competition"))?;
        }
        Ok((updated, promoted))
    })
    .await
    .map(|(updated, promoted)| {
        live.competition(id);
        live.publish_all(promoted);
        updated
    })
}

/// Its organizer calls it off: every registration and waiting entry is cancelled and mailed
/// once (`COMPETITION_CANCELLED`), reminders stop, registering is closed. Under the row
/// lock: the locking read and one statement.
pub async fn cancel(
    db: &PgPool,
    live: &Changes,
    caller: &Claims,
    id: Uuid,
) -> AppResult<Competition> {
    let mut conn = db.get().await?;
    owned(&mut conn, caller, id, false).await?;
    let cancelled = conn
        .transaction(async |conn| {
            // The lock first, in a statement of its own: the cancelling statement then reads
            // every registration committed before it, and none can join after.
            owned(conn, caller, id, true).await?;
            prepared(CANCEL_COMPETITION)
                .bind::<SqlUuid, _>(id)
                .get_result::<Competition>(conn)
                .await
                .optional()?
                .ok_or_else(|| bad_input("the competition is already cancelled"))
        })
        .await?;
    live.competition(id);
    // Everyone it cancelled: at the same instant, in the same transaction.
    let affected: Vec<(Uuid, Uuid)> = registrations_table::table
        .filter(registrations_table::competition_id.eq(id))
        .filter(registrations_table::cancelled_at.eq(cancelled.cancelled_at))
        .select((registrations_table::id, registrations_table::user_id))
        .load(&mut conn)
        .await?;
    live.publish_all(
        affected
            .into_iter()
            .map(|(registration_id, user_id)| Change::Registration {
                user_id,
                registration_id,
            }),
    );
    Ok(cancelled)
}

/// Cancels competition `$1` and everything registered for it, mailing each participant
/// once; no row when it was cancelled already.
const CANCEL_COMPETITION: &str = r#"
WITH cancelled AS (
    UPDATE competitions
       SET cancelled_at = now(), registered_count = 0, waitlist_count = 0
     WHERE id = $1 AND cancelled_at IS NULL
    RETURNING *
), dropped AS (
    UPDATE registrations r
       SET status = 'CANCELLED', cancelled_at = now(), waitlist_seq = NULL
      FROM cancelled c
     WHERE r.competition_id = c.id AND r.status <> 'CANCELLED'
    RETURNING r.id, r.user_id, r.activation
), mailed AS (
    INSERT INTO mailbox (user_id, registration_id, kind, activation, to_address, subject, body)
    SELECT u.id, d.id, 'COMPETITION_CANCELLED', d.activation, u.email,
           format('Cancelled: %s', c.title),
           format(E'Hello %s,

"%s", which was to start on %s UTC, has been cancelled by its organizer. Your registration is cancelled.

Mini-Compete',
                  u.name, c.title, to_char(c.start_date AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'))
      FROM dropped d
      JOIN users u ON u.id = d.user_id
     CROSS JOIN cancelled c
    ON CONFLICT (registration_id, kind, activation) DO NOTHING
)
SELECT id, organizer_id, title, description, tags, capacity, registered_count, reg_deadline,
       start_date, created_at, waitlist_count, cancelled_at
  FROM cancelled"#;

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
    /// One organizer's competitions only.
    pub organizer_id: Option<Uuid>,
}

impl Filter {
    /// A tag longer than any competition's matches none. Such a filter is answered without
    /// a statement: a client may send a megabyte of tag, and each connection that carried
    /// one to Postgres kept a buffer of its size.
    fn matches_nothing(&self) -> bool {
        self.tag
            .as_ref()
            .is_some_and(|tag| tag.chars().count() > MAX_TAG_CHARS)
    }
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
        "(NOT $1 OR (c.reg_deadline > now() AND c.registered_count < c.capacity
                     AND c.cancelled_at IS NULL))"
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
                    c.waitlist_count, c.cancelled_at,
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
const LIST_OF_ORGANIZER: &str = listing!("AND c.organizer_id = $5");
const LIST_TAGGED_OF_ORGANIZER: &str =
    listing!("AND c.tags @> ARRAY[$5::text] AND c.organizer_id = $6");
const COUNT_ALL: &str = counting!("");
const COUNT_TAGGED: &str = counting!("AND c.tags @> ARRAY[$2::text]");
const COUNT_OF_ORGANIZER: &str = counting!("AND c.organizer_id = $2");
const COUNT_TAGGED_OF_ORGANIZER: &str =
    counting!("AND c.tags @> ARRAY[$2::text] AND c.organizer_id = $3");

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

impl ListedRow {
    fn split(self) -> (Competition, User) {
        let organizer = User {
            id: self.competition.organizer_id,
            name: self.organizer_name,
            email: self.organizer_email,
            role: self.organizer_role,
            created_at: self.organizer_created_at,
        };
        (self.competition, organizer)
    }
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
    if filter.matches_nothing() {
        return Ok(Page {
            items: Vec::new(),
            organizers: Vec::new(),
            has_next_page: false,
        });
    }
    let after = after.unwrap_or(Cursor::START);
    let statement = match (&filter.tag, filter.organizer_id) {
        (None, None) => LIST_ALL,
        (Some(_), None) => LIST_TAGGED,
        (None, Some(_)) => LIST_OF_ORGANIZER,
        (Some(_), Some(_)) => LIST_TAGGED_OF_ORGANIZER,
    };
    let mut query = prepared(statement)
        .bind::<Bool, _>(filter.open_only)
        .bind::<Timestamptz, _>(after.created_at)
        .bind::<SqlUuid, _>(after.id)
        .bind::<BigInt, _>(first + 1);
    if let Some(tag) = &filter.tag {
        query = query.bind::<Text, _>(tag.clone());
    }
    if let Some(organizer_id) = filter.organizer_id {
        query = query.bind::<SqlUuid, _>(organizer_id);
    }
    let rows: Vec<ListedRow> = query.load(conn).await?;
    let has_next_page = rows.len() as i64 > first;
    let (items, organizers) = rows
        .into_iter()
        .take(first as usize)
        .map(ListedRow::split)
        .unzip();
    Ok(Page {
        items,
        organizers,
        has_next_page,
    })
}

/// A competition and its organizer, in one statement (a competition page shows both).
const FIND_WITH_ORGANIZER: &str = "
SELECT c.id, c.organizer_id, c.title, c.description, c.tags, c.capacity,
       c.registered_count, c.reg_deadline, c.start_date, c.created_at,
       c.waitlist_count, c.cancelled_at,
       u.name AS organizer_name, u.email AS organizer_email,
       u.role AS organizer_role, u.created_at AS organizer_created_at
  FROM competitions c JOIN users u ON u.id = c.organizer_id
 WHERE c.id = $1";

pub async fn find_with_organizer(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> AppResult<Option<(Competition, User)>> {
    let row: Option<ListedRow> = prepared(FIND_WITH_ORGANIZER)
        .bind::<SqlUuid, _>(id)
        .get_result(conn)
        .await
        .optional()?;
    Ok(row.map(ListedRow::split))
}

/// A competition with its organizer and, for that organizer only, its registrations
/// with their users, newest first, in one statement (the organizer's page). A viewer who
/// is not the organizer joins no registration.
const FIND_WITH_REGISTRATIONS: &str = "
SELECT c.id, c.organizer_id, c.title, c.description, c.tags, c.capacity,
       c.registered_count, c.reg_deadline, c.start_date, c.created_at,
       c.waitlist_count, c.cancelled_at,
       o.name AS organizer_name, o.email AS organizer_email,
       o.role AS organizer_role, o.created_at AS organizer_created_at,
       r.id AS registration_id, r.user_id AS registration_user_id,
       r.status AS registration_status, r.created_at AS registration_created_at,
       r.confirmed_at AS registration_confirmed_at,
       r.cancelled_at AS registration_cancelled_at,
       r.waitlist_seq AS registration_waitlist_seq,
       p.name AS participant_name, p.email AS participant_email,
       p.role AS participant_role, p.created_at AS participant_created_at
  FROM competitions c
  JOIN users o ON o.id = c.organizer_id
  LEFT JOIN registrations r ON r.competition_id = c.id AND c.organizer_id = $2
  LEFT JOIN users p ON p.id = r.user_id
 WHERE c.id = $1
 ORDER BY r.created_at DESC, r.id DESC";

/// One row of `FIND_WITH_REGISTRATIONS`: the competition and its organizer (the same in
/// every row), then one registration and its user, all null when there is none.
#[derive(QueryableByName)]
struct RegistrationRow {
    #[diesel(embed)]
    listed: ListedRow,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    registration_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    registration_user_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<Text>)]
    registration_status: Option<registrations::RegistrationStatus>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    registration_created_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    registration_confirmed_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    registration_cancelled_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<BigInt>)]
    registration_waitlist_seq: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    participant_name: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    participant_email: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    participant_role: Option<Role>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    participant_created_at: Option<DateTime<Utc>>,
}

impl RegistrationRow {
    fn split(self) -> (ListedRow, Option<(registrations::Registration, User)>) {
        let competition_id = self.listed.competition.id;
        let joined = (|| {
            let user_id = self.registration_user_id?;
            let registration = registrations::Registration {
                id: self.registration_id?,
                user_id,
                competition_id,
                status: self.registration_status?,
                created_at: self.registration_created_at?,
                confirmed_at: self.registration_confirmed_at,
                cancelled_at: self.registration_cancelled_at,
                waitlist_seq: self.registration_waitlist_seq,
            };
            let participant = User {
                id: user_id,
                name: self.participant_name?,
                email: self.participant_email?,
                role: self.participant_role?,
                created_at: self.participant_created_at?,
            };
            Some((registration, participant))
        })();
        (self.listed, joined)
    }
}

/// A competition, its organizer and its registrations with their users, newest first,
/// in one statement. The registrations are read only when `viewer` organizes it (empty
/// otherwise): whoever shows them must still check that the viewer may see them.
pub async fn find_with_registrations(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    viewer: Uuid,
) -> AppResult<Option<(Competition, User, Vec<(registrations::Registration, User)>)>> {
    let rows: Vec<RegistrationRow> = prepared(FIND_WITH_REGISTRATIONS)
        .bind::<SqlUuid, _>(id)
        .bind::<SqlUuid, _>(viewer)
        .load(conn)
        .await?;
    let mut rows = rows.into_iter();
    let Some(first) = rows.next() else {
        return Ok(None);
    };
    let (listed, first_registration) = first.split();
    let (competition, organizer) = listed.split();
    let registrations = first_registration
        .into_iter()
        .chain(rows.filter_map(|row| row.split().1))
        .collect();
    Ok(Some((competition, organizer, registrations)))
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

pub async fn count(conn: &mut AsyncPgConnection, filter: &Filter) -> AppResult<i64> {
    if filter.matches_nothing() {
        return Ok(0);
    }
    let statement = match (&filter.tag, filter.organizer_id) {
        (None, None) => COUNT_ALL,
        (Some(_), None) => COUNT_TAGGED,
        (None, Some(_)) => COUNT_OF_ORGANIZER,
        (Some(_), Some(_)) => COUNT_TAGGED_OF_ORGANIZER,
    };
    let mut query = prepared(statement).bind::<Bool, _>(filter.open_only);
    if let Some(tag) = &filter.tag {
        query = query.bind::<Text, _>(tag.clone());
    }
    if let Some(organizer_id) = filter.organizer_id {
        query = query.bind::<SqlUuid, _>(organizer_id);
    }
    Ok(query.get_result::<Count>(conn).await?.n)
}

pub async fn find_many(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> AppResult<Vec<Competition>> {
    Ok(competitions::table
        .filter(competitions::id.eq_any(ids))
        .select(Competition::as_select())
        .load(conn)
        .await?)
}
