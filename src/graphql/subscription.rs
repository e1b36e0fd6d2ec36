//! Live updates (API.md's `Subscription`), fed by `live::Hub`.

use std::{
    collections::HashMap,
    future,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use async_graphql::{Context, ID, Subscription as SubscriptionObject};
use futures_util::{Stream, StreamExt};
use tokio_stream::wrappers::{ReceiverStream, WatchStream};
use uuid::Uuid;

use super::{
    context::ContextExt,
    model::{CompetitionView, RegistrationView},
};
use crate::{
    competitions::Competition,
    error::{AppError, AppResult},
    registrations::Registration,
    validation,
};

pub struct Subscription;

/// How many subscriptions one connection holds; each holds a slot while it runs.
#[derive(Clone)]
pub struct SubscriptionSlots {
    taken: Arc<AtomicUsize>,
    limit: usize,
}

/// A subscription's slot on its connection, given back when the subscription ends.
pub struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl SubscriptionSlots {
    pub fn new(limit: usize) -> Self {
        Self {
            taken: Arc::default(),
            limit,
        }
    }

    fn take(&self) -> AppResult<Slot> {
        let taken = self.taken.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(Arc::clone(&self.taken));
        if taken >= self.limit {
            return Err(AppError::TooComplex(format!(
                "at most {} subscriptions per connection",
                self.limit
            )));
        }
        Ok(slot)
    }
}

fn slot(ctx: &Context<'_>) -> AppResult<Slot> {
    match ctx.data_opt::<SubscriptionSlots>() {
        Some(slots) => slots.take(),
        None => Err(AppError::BadInput(
            "subscriptions run over the WebSocket at /graphql/ws".into(),
        )),
    }
}

#[SubscriptionObject]
impl Subscription {
    /// The competition as it is now, at once, then again after every change of its seats,
    /// waiting list or details (from any server process; changes close together arrive as
    /// one, the latest). Ends after it is cancelled.
    async fn competition_changed(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<impl Stream<Item = CompetitionView> + use<>> {
        let id = validation::parse_id("id", &id)?;
        let slot = slot(ctx)?;
        let watch = ctx
            .state()
            .live
            .watch_competition(id)
            .await?
            .ok_or(AppError::NotFound("competition"))?;
        // The cancelled state is the last one sent: then the subscription completes.
        let states = WatchStream::new(watch).filter_map(|state| async move { state });
        Ok(futures_util::stream::unfold(
            (Box::pin(states), false, slot),
            |(mut states, ended, slot)| async move {
                if ended {
                    return None;
                }
                let competition = states.next().await?;
                let ended = competition.cancelled_at.is_some();
                let view = CompetitionView::from(Competition::clone(&competition));
                Some((view, (states, ended, slot)))
            },
        ))
    }

    /// The caller's registrations, each time one changes status (confirmed, promoted from
    /// the waiting list, cancelled by its organizer …). UNAUTHENTICATED without a token.
    async fn my_registration_changed(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = RegistrationView> + use<>> {
        let caller = ctx.caller()?;
        let slot = slot(ctx)?;
        let changes = ctx.state().live.watch_registrations(caller.sub);
        // A change is read after it was announced, so two announcements can read the same
        // state (e.g. registered, then confirmed at once): each state is sent once.
        let mut last_sent: HashMap<Uuid, Registration> = HashMap::new();
        Ok(
            ReceiverStream::new(changes).filter_map(move |registration| {
                let _slot = &slot;
                let repeated = last_sent.get(&registration.id) == Some(&registration);
                last_sent.insert(registration.id, registration.clone());
                future::ready((!repeated).then_some(RegistrationView::from(registration)))
            }),
        )
    }
}
