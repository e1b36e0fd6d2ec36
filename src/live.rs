//! Live changes, from every process to every process's subscribers.
//!
//! Transport: Postgres `LISTEN/NOTIFY`, sent after the change committed and never inside
//! its transaction (a NOTIFY there serialises commits: it would cost the registration
//! statement its one-round-trip-under-the-lock shape). Postgres rather than Redis pub/sub:
//! Redis only accelerates here and may be down, while every process (`serve` and `worker`)
//! always has Postgres, and a NOTIFY is delivered to every listener of the database, in
//! commit order. Cost: each process coalesces what changed into at most one NOTIFY per
//! `PUBLISH_EVERY` (a registration storm makes ten small statements a second, not one per
//! seat).
//!
//! Receiving (`Hub`, in `serve`): one LISTEN connection per process. A competition's
//! subscribers share a `watch` of its latest state: one database read per competition and
//! `REFRESH_EVERY` serves all of them, and a slow subscriber simply sees the latest state
//! when it looks, so nothing is buffered for it. A user's registration changes go through a
//! small bounded channel per subscriber; one that falls behind is dropped.

use std::{
    collections::{HashMap, HashSet},
    pin::pin,
    sync::{Arc, Mutex, PoisonError, Weak},
    time::Duration,
};

use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::StreamExt;
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};
use tokio_util::sync::{CancellationToken, DropGuard};
use uuid::Uuid;

use crate::{
    competitions::{self, Competition},
    db::{PgPool, prepared},
    registrations::{self, Registration},
};

/// The channel every process publishes on and `serve` listens to.
pub const CHANNEL: &str = "mini_compete_changes";
/// How often a process sends what changed (at most).
const PUBLISH_EVERY: Duration = Duration::from_millis(50);
/// How often a competition's state is read again for its subscribers (at most).
const REFRESH_EVERY: Duration = Duration::from_millis(100);
/// Postgres refuses NOTIFY payloads of 8000 bytes and more.
const MAX_PAYLOAD: usize = 7_000;
/// Registration changes a subscriber may have unread before it is dropped.
pub const USER_BACKLOG: usize = 64;
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// What changed: a competition (seats, waiting list, details) or a user's registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Change {
    Competition(Uuid),
    Registration {
        user_id: Uuid,
        registration_id: Uuid,
    },
}

impl Change {
    fn token(&self) -> String {
        match self {
            Self::Competition(id) => format!("c:{id}"),
            Self::Registration {
                user_id,
                registration_id,
            } => format!("r:{user_id}:{registration_id}"),
        }
    }

    fn parse(token: &str) -> Option<Self> {
        let mut parts = token.split(':');
        match (parts.next()?, parts.next()?, parts.next()) {
            ("c", id, None) => Some(Self::Competition(id.parse().ok()?)),
            ("r", user, Some(registration)) => Some(Self::Registration {
                user_id: user.parse().ok()?,
                registration_id: registration.parse().ok()?,
            }),
            _ => None,
        }
    }
}

/// Changes waiting to be published; past this, more are dropped (the next change of the
/// same competition publishes its latest state anyway).
const PUBLISH_BACKLOG: usize = 16_384;

/// Publishes changes after they committed, coalesced (see the module's doc).
#[derive(Clone)]
pub struct Changes {
    sender: mpsc::Sender<Change>,
}

impl Changes {
    /// Starts the publisher; it stops when the last `Changes` clone is dropped.
    pub fn spawn(db: PgPool) -> Self {
        let (sender, mut receiver) = mpsc::channel::<Change>(PUBLISH_BACKLOG);
        tokio::spawn(async move {
            while let Some(first) = receiver.recv().await {
                let window = tokio::time::sleep(PUBLISH_EVERY);
                let mut pending = HashSet::from([first]);
                // Gather what else changes meanwhile; the set bounds the memory.
                let mut window = pin!(window);
                loop {
                    tokio::select! {
                        () = &mut window => break,
                        next = receiver.recv() => match next {
                            Some(change) => { pending.insert(change); }
                            None => break,
                        },
                    }
                }
                if let Err(error) = publish(&db, pending).await {
                    tracing::debug!(%error, "could not publish changes; subscribers miss them");
                }
            }
        });
        Self { sender }
    }

    pub fn publish(&self, change: Change) {
        // Full (Postgres far behind) or closed (shutting down): subscribers miss this one.
        let _ = self.sender.try_send(change);
    }

    pub fn publish_all(&self, changes: impl IntoIterator<Item = Change>) {
        for change in changes {
            self.publish(change);
        }
    }

    pub fn competition(&self, id: Uuid) {
        self.publish(Change::Competition(id));
    }

    pub fn registration(&self, registration: &Registration) {
        self.publish(Change::Competition(registration.competition_id));
        self.publish(Change::Registration {
            user_id: registration.user_id,
            registration_id: registration.id,
        });
    }
}

async fn publish(db: &PgPool, changes: HashSet<Change>) -> anyhow::Result<()> {
    let mut conn = db.get().await?;
    let mut payload = String::new();
    for change in changes {
        let token = change.token();
        if payload.len() + token.len() + 1 > MAX_PAYLOAD {
            notify(&mut conn, &payload).await?;
            payload.clear();
        }
        if !payload.is_empty() {
            payload.push(' ');
        }
        payload.push_str(&token);
    }
    if !payload.is_empty() {
        notify(&mut conn, &payload).await?;
    }
    Ok(())
}

async fn notify(conn: &mut AsyncPgConnection, payload: &str) -> anyhow::Result<()> {
    prepared("SELECT pg_notify($1, $2)")
        .bind::<Text, _>(CHANNEL)
        .bind::<Text, _>(payload.to_owned())
        .execute(conn)
        .await?;
    Ok(())
}

/// The latest state of one competition, shared by its subscribers in this process.
pub type CompetitionWatch = watch::Receiver<Option<Arc<Competition>>>;

/// One process's subscriptions, fed by the LISTEN connection.
#[derive(Clone)]
pub struct Hub(Arc<HubInner>);

struct HubInner {
    /// Stops the LISTEN connection when the last handle goes (the server stopped).
    _listening: DropGuard,
    db: PgPool,
    competitions: Mutex<HashMap<Uuid, Watched>>,
    users: Mutex<HashMap<Uuid, Vec<mpsc::Sender<Registration>>>>,
}

/// A competition with subscribers: its state, and when it was last read.
struct Watched {
    state: watch::Sender<Option<Arc<Competition>>>,
    refresh: Arc<Refresh>,
}

/// Coalesces reads of one competition: at most one in flight, one per `REFRESH_EVERY`.
#[derive(Default)]
struct Refresh {
    /// (a read is scheduled or running, another change arrived meanwhile)
    state: Mutex<(bool, bool)>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Hub {
    /// Starts listening on `database_url` once `ready` says the database is there (it may
    /// not be, when the server starts before Postgres); reconnects by itself.
    pub fn spawn(db: PgPool, database_url: String, mut ready: watch::Receiver<bool>) -> Self {
        let stop = CancellationToken::new();
        let hub = Self(Arc::new(HubInner {
            _listening: stop.clone().drop_guard(),
            db,
            competitions: Mutex::default(),
            users: Mutex::default(),
        }));
        let inner = Arc::downgrade(&hub.0);
        tokio::spawn(stop.run_until_cancelled_owned(async move {
            if ready.wait_for(|ready| *ready).await.is_ok() {
                listen(inner, database_url).await;
            }
        }));
        hub
    }

    /// The state of competition `id` now and after every change, or `None` when there is
    /// no such competition.
    pub async fn watch_competition(
        &self,
        id: Uuid,
    ) -> Result<Option<CompetitionWatch>, crate::error::AppError> {
        let existing = lock(&self.0.competitions)
            .get(&id)
            .map(|watched| watched.state.subscribe());
        if let Some(receiver) = existing
            && receiver.borrow().is_some()
        {
            return Ok(Some(receiver));
        }
        let Some(current) = competitions::find(&mut *self.0.db.get().await?, id).await? else {
            return Ok(None);
        };
        let mut watched = lock(&self.0.competitions);
        let watched = watched.entry(id).or_insert_with(|| Watched {
            state: watch::channel(None).0,
            refresh: Arc::default(),
        });
        watched.state.send_if_modified(|state| {
            if state.is_none() {
                *state = Some(Arc::new(current));
                true
            } else {
                false
            }
        });
        Ok(Some(watched.state.subscribe()))
    }

    /// Every change of `user_id`'s registrations, until the receiver falls
    /// `USER_BACKLOG` behind (then it is dropped) or is dropped itself.
    pub fn watch_registrations(&self, user_id: Uuid) -> mpsc::Receiver<Registration> {
        let (sender, receiver) = mpsc::channel(USER_BACKLOG);
        lock(&self.0.users).entry(user_id).or_default().push(sender);
        receiver
    }
}

impl HubInner {
    fn changed(self: &Arc<Self>, changes: Vec<Change>) {
        let mut registrations = Vec::new();
        for change in changes {
            match change {
                Change::Competition(id) => self.competition_changed(id),
                Change::Registration {
                    user_id,
                    registration_id,
                } => {
                    let watched = lock(&self.users)
                        .get(&user_id)
                        .is_some_and(|senders| !senders.is_empty());
                    if watched {
                        registrations.push((user_id, registration_id));
                    }
                }
            }
        }
        if !registrations.is_empty() {
            tokio::spawn(Arc::clone(self).send_registrations(registrations));
        }
    }

    fn competition_changed(self: &Arc<Self>, id: Uuid) {
        let refresh = {
            let mut competitions = lock(&self.competitions);
            let Some(watched) = competitions.get(&id) else {
                return;
            };
            if watched.state.receiver_count() == 0 {
                competitions.remove(&id);
                return;
            }
            Arc::clone(&watched.refresh)
        };
        let mut state = lock(&refresh.state);
        if state.0 {
            state.1 = true;
            return;
        }
        *state = (true, false);
        drop(state);
        tokio::spawn(Self::refresh(Arc::downgrade(self), id, refresh));
    }

    /// Reads the competition for all its subscribers, again while changes keep coming, at
    /// most once per `REFRESH_EVERY`. Holds the hub only while reading: a stopped server's
    /// hub goes at once.
    async fn refresh(hub: Weak<Self>, id: Uuid, refresh: Arc<Refresh>) {
        loop {
            let started = Instant::now();
            {
                let Some(hub) = hub.upgrade() else { return };
                let read = async { competitions::find(&mut *hub.db.get().await?, id).await };
                match read.await {
                    Ok(Some(competition)) => {
                        if let Some(watched) = lock(&hub.competitions).get(&id) {
                            watched.state.send_replace(Some(Arc::new(competition)));
                        }
                    }
                    Ok(None) => {}
                    Err(error) => tracing::debug!(?error, "cannot read a changed competition"),
                }
            }
            tokio::time::sleep_until(started + REFRESH_EVERY).await;
            let mut state = lock(&refresh.state);
            if state.1 {
                state.1 = false;
            } else {
                state.0 = false;
                return;
            }
        }
    }

    async fn send_registrations(self: Arc<Self>, changed: Vec<(Uuid, Uuid)>) {
        let Ok(mut conn) = self.db.get().await else {
            return;
        };
        for (user_id, registration_id) in changed {
            let Ok(Some(registration)) = registrations::find(&mut conn, registration_id).await
            else {
                continue;
            };
            let mut users = lock(&self.users);
            if let Some(senders) = users.get_mut(&user_id) {
                // Full: a subscriber this far behind is dropped, not buffered for.
                senders.retain(|sender| sender.try_send(registration.clone()).is_ok());
                if senders.is_empty() {
                    users.remove(&user_id);
                }
            }
        }
    }
}

/// Keeps the LISTEN connection open while the hub lives.
async fn listen(hub: Weak<HubInner>, database_url: String) {
    loop {
        if let Err(error) = listen_once(&hub, &database_url).await {
            tracing::warn!(%error, "change notifications lost; reconnecting");
        }
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

async fn listen_once(hub: &Weak<HubInner>, database_url: &str) -> anyhow::Result<()> {
    let mut conn = AsyncPgConnection::establish(database_url).await?;
    diesel::sql_query(format!("LISTEN {CHANNEL}"))
        .execute(&mut conn)
        .await?;
    // Whatever changed while nobody listened: every watched competition is read again.
    if let Some(hub) = hub.upgrade() {
        let watched: Vec<Uuid> = lock(&hub.competitions).keys().copied().collect();
        hub.changed(watched.into_iter().map(Change::Competition).collect());
    }
    let mut notifications = pin!(conn.notifications_stream());
    while let Some(notification) = notifications.next().await {
        let notification = notification?;
        let Some(hub) = hub.upgrade() else {
            return Ok(());
        };
        hub.changed(
            notification
                .payload
                .split(' ')
                .filter_map(Change::parse)
                .collect(),
        );
    }
    anyhow::bail!("connection closed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_read_back_as_written() {
        let (user_id, registration_id, id) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        for change in [
            Change::Competition(id),
            Change::Registration {
                user_id,
                registration_id,
            },
        ] {
            assert_eq!(Change::parse(&change.token()), Some(change));
        }
        assert_eq!(Change::parse("x:1"), None);
        assert_eq!(Change::parse("c:not-a-uuid"), None);
    }
}
