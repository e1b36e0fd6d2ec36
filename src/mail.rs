//! Mail: the confirmation and reminder messages, and the mailbox they are "sent" to.
//!
//! Every send is a single SQL statement, so it is atomic without an explicit transaction,
//! and idempotent: `mailbox_once_per_activation` (one row per registration, kind and
//! activation) turns a second run of the same job into a no-op. Jobs may run twice (a rescued stalled task, two
//! workers racing), so this is what makes "exactly one mail" hold.

use chrono::{DateTime, Utc};
use diesel::{
    deserialize::FromSqlRow,
    expression::AsExpression,
    prelude::*,
    sql_types::{Array, Integer, Text, Uuid as SqlUuid},
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::{
    db::prepared,
    error::{AppResult, bad_input},
    live::Change,
    schema::mailbox,
};

/// Largest `first` of a mailbox page.
pub const MAX_PAGE_SIZE: i64 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
pub enum MailKind {
    Confirmation,
    Reminder,
    Promoted,
    WaitlistClosed,
    CompetitionCancelled,
}

crate::db::text_enum!(MailKind {
    Confirmation = "CONFIRMATION",
    Reminder = "REMINDER",
    Promoted = "PROMOTED",
    WaitlistClosed = "WAITLIST_CLOSED",
    CompetitionCancelled = "COMPETITION_CANCELLED",
});

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = mailbox, check_for_backend(diesel::pg::Pg))]
pub struct Mail {
    pub id: Uuid,
    pub kind: MailKind,
    pub to_address: String,
    pub subject: String,
    pub body: String,
    pub sent_at: DateTime<Utc>,
}

/// Confirms the registrations of a CTE `wanted (registration_id, activation, promoted)`
/// unless cancelled (or cancelled and made again: a newer activation has its own task), and
/// mails each participant once per activation, CONFIRMATION or PROMOTED; the CTE `confirmed`
/// answers `id, user_id, activation` of those confirmed. The mailbox rows and the status
/// changes commit together, or not at all. A macro, so that a statement that finds its
/// `wanted` elsewhere (the worker's claim) can be composed with `concat!`.
macro_rules! confirm_wanted {
    () => {
        r#"confirmed AS (
    UPDATE registrations r
       SET status = 'CONFIRMED', confirmed_at = coalesce(r.confirmed_at, now())
      FROM wanted w
     WHERE r.id = w.registration_id AND r.activation = w.activation
       AND r.status IN ('PENDING', 'CONFIRMED')
    RETURNING r.id, r.user_id, r.competition_id, r.activation, w.promoted
), mailed AS (
    INSERT INTO mailbox (user_id, registration_id, kind, activation, to_address, subject, body)
SELECT u.id, r.id, CASE WHEN r.promoted THEN 'PROMOTED' ELSE 'CONFIRMATION' END, r.activation,
       u.email,
       CASE WHEN r.promoted THEN format('You have a seat: %s', c.title)
            ELSE format('Registration confirmed: %s', c.title) END,
       CASE WHEN r.promoted
            THEN format(E'Hello %s,\n\na seat in "%s" freed up, and it is yours: you were first on the waiting list. It starts on %s UTC.\n\nGood luck!\nMini-Compete',
                        u.name, c.title, to_char(c.start_date AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'))
            ELSE format(E'Hello %s,\n\nyour seat in "%s" is confirmed. It starts on %s UTC.\n\nGood luck!\nMini-Compete',
                        u.name, c.title, to_char(c.start_date AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI')) END
  FROM confirmed r
  JOIN users u ON u.id = r.user_id
  JOIN competitions c ON c.id = r.competition_id
ON CONFLICT (registration_id, kind, activation) DO NOTHING
)"#
    };
}
pub(crate) use confirm_wanted;

/// Confirms registrations `$1` (their activations `$2`, and whether each seat came from
/// the waiting list `$3`), as `confirm_wanted` says. A worker confirms a batch of tasks that
/// needed a second attempt with it, in one statement and one commit.
const CONFIRM_MANY: &str = concat!(
    "
WITH wanted AS (
    SELECT * FROM unnest($1::uuid[], $2::integer[], $3::boolean[])
                  AS w (registration_id, activation, promoted)
), ",
    confirm_wanted!(),
    "
SELECT id, user_id FROM confirmed"
);

const LOCK_DUE_WAITLISTS: &str = "
SELECT id FROM competitions WHERE reg_deadline <= now() AND waitlist_count > 0
 ORDER BY id FOR UPDATE";

const CLOSE_WAITLISTS: &str = r#"
WITH closed AS (
    UPDATE competitions SET waitlist_count = 0
     WHERE id = ANY($1)
    RETURNING id, title, start_date
), dropped AS (
    UPDATE registrations r
       SET status = 'CANCELLED', cancelled_at = now(), waitlist_seq = NULL
      FROM closed c
     WHERE r.competition_id = c.id AND r.waitlist_seq IS NOT NULL
    RETURNING r.id, r.user_id, r.competition_id, r.activation
), mailed AS (
    INSERT INTO mailbox (user_id, registration_id, kind, activation, to_address, subject, body)
SELECT u.id, d.id, 'WAITLIST_CLOSED', d.activation, u.email,
       format('Waiting list closed: %s', c.title),
       format(E'Hello %s,\n\nregistration for "%s" has closed and no seat freed up for you, so your place on the waiting list is cancelled.\n\nMini-Compete',
              u.name, c.title)
  FROM dropped d
  JOIN users u ON u.id = d.user_id
  JOIN closed c ON c.id = d.competition_id
ON CONFLICT (registration_id, kind, activation) DO NOTHING
)
SELECT id, user_id FROM dropped"#;

/// One REMINDER per CONFIRMED registration (activation) of every competition starting
/// within 24 hours that has none yet.
const REMIND: &str = r#"
INSERT INTO mailbox (user_id, registration_id, kind, activation, to_address, subject, body)
SELECT u.id, r.id, 'REMINDER', r.activation, u.email,
       format('Reminder: %s starts soon', c.title),
       format(E'Hello %s,\n\n"%s" starts on %s UTC, within a day. See you there!\nMini-Compete',
              u.name, c.title, to_char(c.start_date AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'))
  FROM competitions c
  JOIN registrations r ON r.competition_id = c.id AND r.status = 'CONFIRMED'
  JOIN users u ON u.id = r.user_id
 WHERE c.start_date > now() AND c.start_date <= now() + interval '24 hours'
   AND c.cancelled_at IS NULL
   AND NOT EXISTS (
       SELECT 1 FROM mailbox m
        WHERE m.registration_id = r.id AND m.kind = 'REMINDER' AND m.activation = r.activation)
ON CONFLICT (registration_id, kind, activation) DO NOTHING"#;

/// A registration to confirm: which, which activation, and whether its seat came from the
/// waiting list (its mail is then PROMOTED).
#[derive(Debug, Clone, Copy)]
pub struct ToConfirm {
    pub registration_id: Uuid,
    pub activation: i32,
    pub promoted: bool,
}

#[derive(QueryableByName)]
struct Touched {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    user_id: Uuid,
}

impl From<Touched> for Change {
    fn from(row: Touched) -> Self {
        Change::Registration {
            user_id: row.user_id,
            registration_id: row.id,
        }
    }
}

/// Confirms every registration of `targets` that is not cancelled, mailing each once;
/// returns the registrations it confirmed, to publish.
pub async fn confirm_many(
    conn: &mut AsyncPgConnection,
    targets: &[ToConfirm],
) -> AppResult<Vec<Change>> {
    let ids: Vec<Uuid> = targets
        .iter()
        .map(|target| target.registration_id)
        .collect();
    let activations: Vec<i32> = targets.iter().map(|target| target.activation).collect();
    let promoted: Vec<bool> = targets.iter().map(|target| target.promoted).collect();
    let confirmed: Vec<Touched> = prepared(CONFIRM_MANY)
        .bind::<Array<SqlUuid>, _>(ids)
        .bind::<Array<Integer>, _>(activations)
        .bind::<Array<diesel::sql_types::Bool>, _>(promoted)
        .load(conn)
        .await?;
    Ok(confirmed.into_iter().map(Change::from).collect())
}

/// Closes the waiting lists of every competition past its deadline: the entries still
/// waiting are CANCELLED and mailed WAITLIST_CLOSED, once each; returns how many. Each
/// competition's row is locked first, in one order, like every other operation on it; a
/// second run (another tick, another worker) finds nothing left to close. Returns what it
/// changed, to publish.
pub async fn close_waitlists(conn: &mut AsyncPgConnection) -> AppResult<Vec<Change>> {
    conn.transaction(async |conn| {
        // The locks first, in a statement of their own, so that closing reads every entry
        // committed before them.
        #[derive(QueryableByName)]
        struct Locked {
            #[diesel(sql_type = SqlUuid)]
            id: Uuid,
        }
        let locked: Vec<Uuid> = prepared(LOCK_DUE_WAITLISTS)
            .load::<Locked>(conn)
            .await?
            .into_iter()
            .map(|row| row.id)
            .collect();
        if locked.is_empty() {
            return Ok(Vec::new());
        }
        let closed: Vec<Touched> = prepared(CLOSE_WAITLISTS)
            .bind::<Array<SqlUuid>, _>(locked.clone())
            .load(conn)
            .await?;
        Ok(locked
            .into_iter()
            .map(Change::Competition)
            .chain(closed.into_iter().map(Change::from))
            .collect())
    })
    .await
}

/// Sends every reminder that is due; returns how many were sent.
pub async fn send_due_reminders(conn: &mut AsyncPgConnection) -> AppResult<usize> {
    Ok(prepared(REMIND).execute(conn).await?)
}

/// A user's mailbox, newest first.
pub async fn mailbox_of(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    first: i64,
) -> AppResult<Vec<Mail>> {
    if !(0..=MAX_PAGE_SIZE).contains(&first) {
        return Err(bad_input(format!("first must be 0 to {MAX_PAGE_SIZE}")));
    }
    Ok(mailbox::table
        .filter(mailbox::user_id.eq(user_id))
        .order((mailbox::sent_at.desc(), mailbox::id.desc()))
        .limit(first)
        .select(Mail::as_select())
        .load(conn)
        .await?)
}
