//! Registration: idempotent, never oversold, cancellable.
//!
//! Registering is one SQL statement in its own (implicit) transaction: the conditional
//! `UPDATE competitions … RETURNING` takes the competition's row lock and a seat, and the
//! same statement inserts the registration and its confirmation task. So the lock is held
//! for exactly one round trip, and a registration exists if and only if its task does. A
//! participant who registered before makes the INSERT violate `registrations_one_per_user`,
//! which aborts the whole statement, seat included; a second statement then reactivates a
//! cancelled registration the same way, or aborts again for an active one.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::{
    deserialize::FromSqlRow,
    expression::AsExpression,
    prelude::*,
    sql_types::{Array, BigInt, Bool, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid},
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::{
    auth::Claims,
    competitions::Competition,
    db::{PgPool, PreparedSql, prepared},
    error::{AppError, AppResult, bad_input, violates},
    idempotency::{self, IdempotencyStore, Record, Reservation},
    jobs,
    live::{Change, Changes},
    registrar::Registrar,
    schema::{competitions, registrations, users},
    users::{Role, User},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
pub enum RegistrationStatus {
    Pending,
    Confirmed,
    Waitlisted,
    Cancelled,
}

crate::db::text_enum!(RegistrationStatus {
    Pending = "PENDING",
    Confirmed = "CONFIRMED",
    Waitlisted = "WAITLISTED",
    Cancelled = "CANCELLED",
});

#[derive(Debug, Clone, PartialEq, Eq, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = registrations, check_for_backend(diesel::pg::Pg))]
pub struct Registration {
    pub id: Uuid,
    pub user_id: Uuid,
    pub competition_id: Uuid,
    pub status: RegistrationStatus,
    pub created_at: DateTime<Utc>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    /// Where it joined the waiting list (while WAITLISTED).
    pub waitlist_seq: Option<i64>,
}

/// The seat: `$1`'s row lock and one more registered, while there is room and it is open.
macro_rules! take_seat {
    () => {
        "
WITH seat AS (
    UPDATE competitions SET registered_count = registered_count + 1
     WHERE id = $1 AND registered_count < capacity AND reg_deadline > now()
       AND cancelled_at IS NULL
    RETURNING id
)"
    };
}

/// The confirmation task (`$3` task name, `$4` queue) and the record of the key `$5` of
/// what `registered` holds, which the statement answers.
macro_rules! task_and_record {
    () => {
        ", task AS (
    INSERT INTO fang_tasks (metadata, task_type)
    SELECT jsonb_build_object('type', $3::text, 'registration_id', id, 'activation', activation),
           $4
      FROM registered
), recorded AS (
    INSERT INTO idempotency_keys (user_id, key, competition_id, registration_id)
    SELECT $2, $5, $1, id FROM registered
)
SELECT id, user_id, competition_id, status, created_at, confirmed_at, cancelled_at,
       waitlist_seq
  FROM registered"
    };
}

/// Takes a seat and registers `$2` for competition `$1`, with its confirmation task
/// (`$3` task name, `$4` queue) and the durable record of its idempotency key `$5`, in one
/// statement. No row: no seat was taken. A key used before violates
/// `idempotency_keys_pkey`, and a registration of `$2` for `$1` (active, or cancelled:
/// then `REGISTER_AGAIN`) violates `registrations_one_per_user`; either aborts it all.
/// (Public for the load generator, which measures what Postgres alone does with it.)
pub const REGISTER: &str = concat!(
    take_seat!(),
    ", registered AS (
    INSERT INTO registrations (user_id, competition_id)
    SELECT $2, id FROM seat
    RETURNING *
)",
    task_and_record!()
);

/// `REGISTER` for a participant who registered for `$1` before: a cancelled registration
/// becomes PENDING again (a new activation, with its own task); an active one still makes
/// the INSERT violate `registrations_one_per_user`, which gives the seat back. Run only after
/// `REGISTER` met a registration: the extra UPDATE made every registration a third dearer
/// in Postgres (pgbench, the schema ceiling: about 7 400 against 9 900 tps).
const REGISTER_AGAIN: &str = concat!(
    take_seat!(),
    ", reactivated AS (
    UPDATE registrations
       SET status = 'PENDING', created_at = now(), confirmed_at = NULL, cancelled_at = NULL,
           activation = activation + 1
     WHERE user_id = $2 AND competition_id = $1 AND status = 'CANCELLED'
       AND EXISTS (SELECT 1 FROM seat)
    RETURNING *
), inserted AS (
    INSERT INTO registrations (user_id, competition_id)
    SELECT $2, id FROM seat WHERE NOT EXISTS (SELECT 1 FROM reactivated)
    RETURNING *
), registered AS (
    SELECT * FROM reactivated UNION ALL SELECT * FROM inserted
)",
    task_and_record!()
);

/// Puts `$2` on the waiting list of competition `$1`, full and open, with the record of its
/// key `$3`, in one statement; no row when it is not full (a seat freed up: take it) or
/// not open. Takes the same row lock as registering.
const JOIN_WAITLIST: &str = "
WITH place AS (
    UPDATE competitions SET waitlist_count = waitlist_count + 1
     WHERE id = $1 AND registered_count >= capacity AND reg_deadline > now()
       AND cancelled_at IS NULL
    RETURNING id
), reactivated AS (
    UPDATE registrations
       SET status = 'WAITLISTED', waitlist_seq = nextval('registrations_waitlist_seq'),
           created_at = now(), confirmed_at = NULL, cancelled_at = NULL,
           activation = activation + 1
     WHERE user_id = $2 AND competition_id = $1 AND status = 'CANCELLED'
       AND EXISTS (SELECT 1 FROM place)
    RETURNING *
), inserted AS (
    INSERT INTO registrations (user_id, competition_id, status, waitlist_seq)
    SELECT $2, id, 'WAITLISTED', nextval('registrations_waitlist_seq') FROM place
     WHERE NOT EXISTS (SELECT 1 FROM reactivated)
    RETURNING *
), registered AS (
    SELECT * FROM reactivated UNION ALL SELECT * FROM inserted
), recorded AS (
    INSERT INTO idempotency_keys (user_id, key, competition_id, registration_id)
    SELECT $2, $3, $1, id FROM registered
)
SELECT id, user_id, competition_id, status, created_at, confirmed_at, cancelled_at,
       waitlist_seq
  FROM registered";

/// Gives the waiting list of competition `$1` the seats that are free once `$2` more are
/// released (a cancellation releases one, a raised capacity none): the longest-waiting
/// entries become PENDING with their confirmation tasks (`$3` task name, `$4` queue), which
/// mail PROMOTED. Run by the transaction that freed the seats, holding the row lock; only
/// while registration is open. Answers the promoted registrations and their users.
const PROMOTE: &str = "
WITH room AS (
    SELECT capacity - (registered_count - $2) AS free FROM competitions
     WHERE id = $1 AND reg_deadline > now() AND cancelled_at IS NULL
), next AS (
    SELECT id FROM registrations
     WHERE competition_id = $1 AND waitlist_seq IS NOT NULL
     ORDER BY waitlist_seq
     LIMIT greatest(coalesce((SELECT free FROM room), 0), 0)
       FOR UPDATE
), promoted AS (
    UPDATE registrations r SET status = 'PENDING', waitlist_seq = NULL
      FROM next WHERE r.id = next.id
    RETURNING r.id, r.user_id, r.activation
), counted AS (
    UPDATE competitions
       SET registered_count = registered_count - $2 + (SELECT count(*) FROM promoted),
           waitlist_count = waitlist_count - (SELECT count(*) FROM promoted)
     WHERE id = $1
), task AS (
    INSERT INTO fang_tasks (metadata, task_type)
    SELECT jsonb_build_object('type', $3::text, 'registration_id', id, 'activation', activation,
                              'promoted', true), $4
      FROM promoted
)
SELECT id, user_id FROM promoted";

/// The 1-based places of WAITLISTED registrations `$1`, of competitions `$2`, at sequences
/// `$3` (the arrays side by side).
const WAITLIST_PLACES: &str = "
SELECT w.id,
       (SELECT count(*) FROM registrations r
         WHERE r.competition_id = w.competition_id AND r.waitlist_seq IS NOT NULL
           AND r.waitlist_seq <= w.seq) AS place
  FROM unnest($1::uuid[], $2::uuid[], $3::bigint[]) AS w (id, competition_id, seq)";

/// Why a registration took no seat, read after the fact without any lock: the
/// competition's state, whether the participant holds a seat, and the key's record.
const WHY_NO_SEAT: &str = "
SELECT c.id IS NOT NULL AS found, c.reg_deadline, c.cancelled_at IS NOT NULL AS cancelled,
       EXISTS (SELECT 1 FROM registrations r
                WHERE r.user_id = $2 AND r.competition_id = $1 AND r.status <> 'CANCELLED')
         AS holds_seat,
       k.competition_id AS recorded_competition, k.registration_id AS recorded_registration
  FROM (SELECT 1) AS one
  LEFT JOIN competitions c ON c.id = $1
  LEFT JOIN idempotency_keys k ON k.user_id = $2 AND k.key = $3";

/// Registers the caller (a participant) once per idempotency key: a seat if one is free,
/// else — when `waitlist` — a place on the waiting list.
pub async fn register(
    registrar: &Registrar,
    idempotency: &IdempotencyStore,
    changes: &Changes,
    caller: &Claims,
    competition_id: Uuid,
    key: &str,
    waitlist: bool,
) -> AppResult<Registration> {
    if caller.role != Role::Participant {
        return Err(AppError::Forbidden("only participants can register"));
    }
    let db = registrar.db();
    let attempt = match idempotency.reserve(caller.sub, key, competition_id).await? {
        Reservation::Completed(registration_id) => {
            let mut conn = db.get().await?;
            match find(&mut conn, registration_id).await? {
                Some(registration) => return Ok(registration),
                // Redis remembers a database that is gone (dropped and created again
                // under a running server): Postgres decides.
                None => None,
            }
        }
        Reservation::InProgress => {
            // Usually a concurrent duplicate; but Redis may also have missed the outcome
            // of a request that committed.
            let mut conn = db.get().await?;
            return match idempotency::find_record(&mut conn, caller.sub, key).await? {
                Some(record) => replay_record(&mut conn, record, competition_id).await,
                None => Err(AppError::RequestInProgress),
            };
        }
        Reservation::Acquired(attempt) => Some(attempt),
        Reservation::Unavailable => None,
    };
    let outcome = take_place(registrar, caller.sub, competition_id, key, waitlist).await;
    if let Some(attempt) = attempt {
        match &outcome {
            // The answer does not wait for Redis: until the outcome lands there, a replay
            // finds the key pending and is answered from the record Postgres committed.
            Ok(registration) => {
                let (idempotency, registration_id) = (idempotency.clone(), registration.id);
                tokio::spawn(async move { idempotency.complete(&attempt, registration_id).await });
            }
            Err(_) => idempotency.release(&attempt).await,
        }
    }
    if let Ok(registration) = &outcome {
        changes.registration(registration);
    }
    outcome
}

/// The answer to a key that already has a record: its registration, if it was made for
/// this competition.
async fn replay_record(
    conn: &mut AsyncPgConnection,
    record: Record,
    competition_id: Uuid,
) -> AppResult<Registration> {
    if record.competition_id != competition_id {
        return Err(AppError::IdempotencyKeyReused);
    }
    find(conn, record.registration_id)
        .await?
        .ok_or(AppError::NotFound("registration"))
}

/// A seat, taken together with other requests' when certain (`Registrar`), or else on its
/// own (one statement, one round trip under the row lock); or else, when asked for and the
/// competition is full, a place on the waiting list (a second statement).
async fn take_place(
    registrar: &Registrar,
    user_id: Uuid,
    competition_id: Uuid,
    key: &str,
    waitlist: bool,
) -> AppResult<Registration> {
    if let Some(registration) = registrar
        .first_attempt(user_id, competition_id, key)
        .await?
    {
        return Ok(registration);
    }
    let mut conn = registrar.db().get().await?;
    let registering = |sql| {
        prepared(sql)
            .bind::<SqlUuid, _>(competition_id)
            .bind::<SqlUuid, _>(user_id)
            .bind::<Text, _>(jobs::CONFIRMATION_TASK)
            .bind::<Text, _>(jobs::CONFIRMATION_QUEUE)
            .bind::<Text, _>(key.to_owned())
    };
    // A seat that frees up between "full" and joining the list is taken instead; the loop
    // ends as soon as the competition stops flipping between full and not.
    for _ in 0..3 {
        let registered = match run(
            &mut conn,
            registering(REGISTER),
            user_id,
            competition_id,
            key,
        )
        .await
        {
            // Perhaps a cancelled registration, to be activated again.
            Err(AppError::AlreadyRegistered) => {
                let again = registering(REGISTER_AGAIN);
                run(&mut conn, again, user_id, competition_id, key).await?
            }
            registered => registered?,
        };
        if let Some(registration) = registered {
            return Ok(registration);
        }
        if !waitlist {
            break;
        }
        let joining = prepared(JOIN_WAITLIST)
            .bind::<SqlUuid, _>(competition_id)
            .bind::<SqlUuid, _>(user_id)
            .bind::<Text, _>(key.to_owned());
        if let Some(registration) = run(&mut conn, joining, user_id, competition_id, key).await? {
            return Ok(registration);
        }
        match why_no_seat(&mut conn, user_id, competition_id, key).await {
            // Not full any more: try the seat again.
            Err(AppError::CompetitionFull) => continue,
            answer => return answer,
        }
    }
    why_no_seat(&mut conn, user_id, competition_id, key).await
}

/// Runs a registering statement. A key used before (a replay Redis did not know of), or a
/// place the participant holds already, aborts it: the key's record tells which.
async fn run(
    conn: &mut AsyncPgConnection,
    statement: PreparedSql,
    user_id: Uuid,
    competition_id: Uuid,
    key: &str,
) -> AppResult<Option<Registration>> {
    match statement.get_result::<Registration>(conn).await.optional() {
        Ok(registration) => Ok(registration),
        Err(error)
            if violates(&error, "registrations_one_per_user")
                || violates(&error, "idempotency_keys_pkey") =>
        {
            match idempotency::find_record(conn, user_id, key).await? {
                Some(record) => replay_record(conn, record, competition_id).await.map(Some),
                None => Err(AppError::AlreadyRegistered),
            }
        }
        Err(error) if violates(&error, "registrations_user_id_fkey") => Err(AppError::ACCOUNT_GONE),
        Err(error) => Err(error.into()),
    }
}

#[derive(QueryableByName)]
struct NoSeat {
    #[diesel(sql_type = Bool)]
    found: bool,
    #[diesel(sql_type = Bool)]
    cancelled: bool,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    reg_deadline: Option<DateTime<Utc>>,
    #[diesel(sql_type = Bool)]
    holds_seat: bool,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    recorded_competition: Option<Uuid>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    recorded_registration: Option<Uuid>,
}

/// Explains a registration that took no seat (after the fact, without any lock); a key
/// that was used before is a replay, whatever the competition's state now.
async fn why_no_seat(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    competition_id: Uuid,
    key: &str,
) -> AppResult<Registration> {
    let state = prepared(WHY_NO_SEAT)
        .bind::<SqlUuid, _>(competition_id)
        .bind::<SqlUuid, _>(user_id)
        .bind::<Text, _>(key.to_owned())
        .get_result::<NoSeat>(conn)
        .await?;
    if let (Some(recorded_competition), Some(registration_id)) =
        (state.recorded_competition, state.recorded_registration)
    {
        let record = Record {
            competition_id: recorded_competition,
            registration_id,
        };
        return replay_record(conn, record, competition_id).await;
    }
    let Some(deadline) = state.reg_deadline.filter(|_| state.found) else {
        return Err(AppError::NotFound("competition"));
    };
    Err(if state.holds_seat {
        AppError::AlreadyRegistered
    } else if state.cancelled || deadline <= Utc::now() {
        AppError::RegistrationClosed
    } else {
        // Full, or a seat freed up in between and a retry may take it: no seat now.
        AppError::CompetitionFull
    })
}

/// Cancels the caller's registration. A seat it held goes, in the same transaction, to the
/// longest-waiting entry (if any, and registration is open); a waiting place just leaves
/// the list. Locks the competition row before the registration row, in the same order as
/// every other operation on a competition, so none of them can deadlock. Under the row
/// lock: the locking read, the registration's read and update, and the promotion.
pub async fn cancel(
    db: &PgPool,
    changes: &Changes,
    caller: &Claims,
    registration_id: Uuid,
) -> AppResult<Registration> {
    let mut conn = db.get().await?;
    let owner = registrations::table
        .find(registration_id)
        .select((registrations::user_id, registrations::competition_id))
        .first::<(Uuid, Uuid)>(&mut conn)
        .await
        .optional()?;
    let Some((owner_id, competition_id)) = owner else {
        return Err(AppError::NotFound("registration"));
    };
    if owner_id != caller.sub {
        return Err(AppError::Forbidden(
            "only the registrant can cancel a registration",
        ));
    }
    conn.transaction(async |conn| {
        competitions::table
            .find(competition_id)
            .select(competitions::id)
            .for_update()
            .execute(conn)
            .await?;
        let was = registrations::table
            .find(registration_id)
            .select(registrations::status)
            .for_update()
            .first::<RegistrationStatus>(conn)
            .await?;
        if was == RegistrationStatus::Cancelled {
            return Err(bad_input("the registration is already cancelled"));
        }
        let cancelled = diesel::update(registrations::table.find(registration_id))
            .set((
                registrations::status.eq(RegistrationStatus::Cancelled),
                registrations::cancelled_at.eq(diesel::dsl::now),
                registrations::waitlist_seq.eq(None::<i64>),
            ))
            .returning(Registration::as_returning())
            .get_result(conn)
            .await?;
        let promoted = if was == RegistrationStatus::Waitlisted {
            diesel::update(competitions::table.find(competition_id))
                .set(competitions::waitlist_count.eq(competitions::waitlist_count - 1))
                .execute(conn)
                .await?;
            Vec::new()
        } else {
            promote(conn, competition_id, 1).await?
        };
        Ok::<_, AppError>((cancelled, promoted))
    })
    .await
    .map(|(cancelled, promoted)| {
        changes.registration(&cancelled);
        changes.publish_all(promoted);
        cancelled
    })
}

/// Releases `released` seats of competition `competition_id` (the caller holds its row
/// lock) and gives every free seat to the waiting list, longest-waiting first; returns the
/// promoted registrations, to publish once the transaction committed.
pub async fn promote(
    conn: &mut AsyncPgConnection,
    competition_id: Uuid,
    released: i32,
) -> AppResult<Vec<Change>> {
    #[derive(QueryableByName)]
    struct Promoted {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
        #[diesel(sql_type = SqlUuid)]
        user_id: Uuid,
    }
    let promoted: Vec<Promoted> = prepared(PROMOTE)
        .bind::<SqlUuid, _>(competition_id)
        .bind::<Integer, _>(released)
        .bind::<Text, _>(jobs::CONFIRMATION_TASK)
        .bind::<Text, _>(jobs::CONFIRMATION_QUEUE)
        .load(conn)
        .await?;
    Ok(promoted
        .into_iter()
        .map(|row| Change::Registration {
            user_id: row.user_id,
            registration_id: row.id,
        })
        .collect())
}

/// Where each WAITLISTED one of `registrations` stands on its list (1 is next), by id, in
/// one statement whatever their number (none when none is WAITLISTED).
pub async fn waitlist_places(
    conn: &mut AsyncPgConnection,
    registrations: &[&Registration],
) -> AppResult<HashMap<Uuid, i64>> {
    #[derive(QueryableByName)]
    struct Place {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
        #[diesel(sql_type = BigInt)]
        place: i64,
    }
    let (mut ids, mut competitions, mut seqs) = (Vec::new(), Vec::new(), Vec::new());
    for registration in registrations {
        if let Some(seq) = registration.waitlist_seq {
            ids.push(registration.id);
            competitions.push(registration.competition_id);
            seqs.push(seq);
        }
    }
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let places: Vec<Place> = prepared(WAITLIST_PLACES)
        .bind::<Array<SqlUuid>, _>(ids)
        .bind::<Array<SqlUuid>, _>(competitions)
        .bind::<Array<BigInt>, _>(seqs)
        .load(conn)
        .await?;
    Ok(places.into_iter().map(|row| (row.id, row.place)).collect())
}

/// The places of the WAITLISTED ones of `listing`, which holds every registration of its
/// competitions (an organizer's listing), without a statement: a place is the rank by
/// `waitlist_seq` among the competition's WAITLISTED registrations, which are all there.
pub fn waitlist_places_in<'a>(
    listing: impl IntoIterator<Item = &'a Registration>,
) -> HashMap<Uuid, i64> {
    let mut waiting: Vec<(Uuid, i64, Uuid)> = listing
        .into_iter()
        .filter_map(|registration| {
            let seq = registration.waitlist_seq?;
            Some((registration.competition_id, seq, registration.id))
        })
        .collect();
    waiting.sort_unstable();
    let mut places = HashMap::with_capacity(waiting.len());
    let mut place = 0;
    let mut list = None;
    for (competition_id, _, id) in waiting {
        place = if list == Some(competition_id) {
            place + 1
        } else {
            1
        };
        list = Some(competition_id);
        places.insert(id, place);
    }
    places
}

pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> AppResult<Option<Registration>> {
    Ok(registrations::table
        .find(id)
        .select(Registration::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// The caller's registrations, newest first.
pub async fn of_user(conn: &mut AsyncPgConnection, user_id: Uuid) -> AppResult<Vec<Registration>> {
    Ok(registrations::table
        .filter(registrations::user_id.eq(user_id))
        .order((registrations::created_at.desc(), registrations::id.desc()))
        .select(Registration::as_select())
        .load(conn)
        .await?)
}

/// The user's registrations with their competitions and organizers, newest first, in one
/// statement.
pub async fn of_user_with_competitions(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
) -> AppResult<Vec<(Registration, Competition, User)>> {
    Ok(registrations::table
        .inner_join(competitions::table.inner_join(users::table))
        .filter(registrations::user_id.eq(user_id))
        .order((registrations::created_at.desc(), registrations::id.desc()))
        .select((
            Registration::as_select(),
            Competition::as_select(),
            User::as_select(),
        ))
        .load(conn)
        .await?)
}

/// Whether `caller` may see `competition`'s registrations: only its organizer may.
pub fn organizer_only(caller: &Claims, competition: &Competition) -> AppResult<()> {
    if competition.organizer_id == caller.sub {
        Ok(())
    } else {
        Err(AppError::Forbidden(
            "only the competition's organizer can see its registrations",
        ))
    }
}

/// A competition's registrations with their users, in one statement; for its organizer
/// only.
pub async fn of_competition_with_users(
    conn: &mut AsyncPgConnection,
    caller: &Claims,
    competition: &Competition,
) -> AppResult<Vec<(Registration, User)>> {
    organizer_only(caller, competition)?;
    of_competitions_with_users(conn, &[competition.id]).await
}

/// The registrations of several competitions with their users, newest first, in one
/// statement (an organizer's listing). The caller checks that whoever sees them organizes
/// each competition (`organizer_only`).
pub async fn of_competitions_with_users(
    conn: &mut AsyncPgConnection,
    competition_ids: &[Uuid],
) -> AppResult<Vec<(Registration, User)>> {
    if competition_ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(registrations::table
        .inner_join(users::table)
        .filter(registrations::competition_id.eq_any(competition_ids))
        .order((registrations::created_at.desc(), registrations::id.desc()))
        .select((Registration::as_select(), User::as_select()))
        .load(conn)
        .await?)
}

/// A competition's registrations, for its organizer only.
pub async fn of_competition(
    conn: &mut AsyncPgConnection,
    caller: &Claims,
    competition: &Competition,
) -> AppResult<Vec<Registration>> {
    organizer_only(caller, competition)?;
    Ok(registrations::table
        .filter(registrations::competition_id.eq(competition.id))
        .order((registrations::created_at.desc(), registrations::id.desc()))
        .select(Registration::as_select())
        .load(conn)
        .await?)
}
