//! GraphQL output and input types: thin views over the domain types.

use std::{borrow::Cow, collections::HashMap};

use async_graphql::{
    Context, Enum, ID, InputObject, InputType, Object, Positioned, ScalarType, SimpleObject, Value,
    parser::types::SelectionSet,
};
use chrono::Utc;
use uuid::Uuid;

use super::{
    context::ContextExt,
    loaders::{CompetitionId, UserId},
    plain::{self, PlainFields},
    scalars::DateTime,
};
use crate::{
    auth::NewAccount,
    competitions::{self, Competition, CompetitionChanges, Cursor, Filter, NewCompetition, Page},
    error::internal,
    mail::{self, Mail},
    registrations::{self, Registration},
    users::{self, User},
};

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(name = "Role", remote = "users::Role")]
pub enum RoleView {
    Participant,
    Organizer,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(
    name = "RegistrationStatus",
    remote = "registrations::RegistrationStatus"
)]
pub enum RegistrationStatusView {
    Pending,
    Confirmed,
    Waitlisted,
    Cancelled,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(name = "MailKind", remote = "mail::MailKind")]
pub enum MailKindView {
    Confirmation,
    Reminder,
    /// A seat freed up and went to the first on the waiting list.
    Promoted,
    /// Registration closed while still waiting.
    WaitlistClosed,
    CompetitionCancelled,
}

fn id(uuid: Uuid) -> ID {
    ID(uuid.to_string())
}

/// The values of the plain fields (see `plain`): as the executor would give them.
fn id_value(uuid: Uuid) -> Value {
    Value::String(uuid.to_string())
}

fn instant(at: chrono::DateTime<Utc>) -> Value {
    ScalarType::to_value(&DateTime(at))
}

fn maybe_instant(at: Option<chrono::DateTime<Utc>>) -> Value {
    at.map_or(Value::Null, instant)
}

/// A row another row points at; its absence breaks a foreign key, so it is a bug.
async fn load_user(ctx: &Context<'_>, user_id: Uuid) -> async_graphql::Result<UserView> {
    let user = ctx
        .loader()
        .load_one(UserId(user_id))
        .await?
        .ok_or_else(|| internal(format!("user {user_id} is missing")))?;
    Ok(UserView(user))
}

pub struct UserView(pub User);

impl PlainFields for User {
    const TYPE_NAME: &'static str = "User";

    fn plain_field(&self, name: &str, _: &Positioned<SelectionSet>) -> Option<Value> {
        Some(match name {
            "id" => id_value(self.id),
            "name" => Value::String(self.name.clone()),
            "email" => Value::String(self.email.clone()),
            "role" => RoleView::from(self.role).to_value(),
            "createdAt" => instant(self.created_at),
            _ => return None,
        })
    }
}

impl PlainFields for UserView {
    const TYPE_NAME: &'static str = User::TYPE_NAME;

    fn plain_field(&self, name: &str, selection: &Positioned<SelectionSet>) -> Option<Value> {
        self.0.plain_field(name, selection)
    }
}

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
    async fn created_at(&self) -> DateTime {
        self.0.created_at.into()
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

/// Absent (or null) fields stay as they are.
#[derive(InputObject)]
pub struct UpdateCompetitionInput {
    pub title: Option<String>,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    /// Not below the seats taken; raising it gives the new seats to the waiting list.
    pub capacity: Option<i32>,
    /// When changed, in the future.
    pub reg_deadline: Option<DateTime>,
    /// After the (resulting) registration deadline.
    pub start_date: Option<DateTime>,
}

impl From<UpdateCompetitionInput> for CompetitionChanges {
    fn from(input: UpdateCompetitionInput) -> Self {
        Self {
            title: input.title,
            description: input.description,
            tags: input.tags,
            capacity: input.capacity,
            reg_deadline: input.reg_deadline.map(|at| at.0),
            start_date: input.start_date.map(|at| at.0),
        }
    }
}

#[derive(InputObject)]
pub struct CreateCompetitionInput {
    pub title: String,
    pub description: String,
    #[graphql(default_with = "Some(Vec::new())")]
    pub tags: Option<Vec<String>>,
    pub capacity: i32,
    pub reg_deadline: DateTime,
    /// Default: regDeadline + 1 day; must be after regDeadline.
    pub start_date: Option<DateTime>,
}

impl From<CreateCompetitionInput> for NewCompetition {
    fn from(input: CreateCompetitionInput) -> Self {
        Self {
            title: input.title,
            description: input.description,
            tags: input.tags.unwrap_or_default(),
            capacity: input.capacity,
            reg_deadline: input.reg_deadline.0,
            start_date: input.start_date.map(|start| start.0),
        }
    }
}

#[derive(Clone)]
pub struct CompetitionView {
    competition: Competition,
    /// Known when the competition was read together with its organizer (listings).
    organizer: Option<User>,
    /// Known when read together with the competition (the organizer's page); still shown
    /// only to its organizer.
    registrations: Option<Vec<RegistrationView>>,
}

impl From<Competition> for CompetitionView {
    fn from(competition: Competition) -> Self {
        Self {
            competition,
            organizer: None,
            registrations: None,
        }
    }
}

impl CompetitionView {
    /// With its organizer read in the same statement (no second lookup).
    pub fn with_organizer(competition: Competition, organizer: User) -> Self {
        Self {
            competition,
            organizer: Some(organizer),
            registrations: None,
        }
    }

    /// With its organizer and its registrations (with their users) read in the same
    /// statement.
    pub fn with_registrations(
        competition: Competition,
        organizer: User,
        registrations: Vec<(Registration, User)>,
    ) -> Self {
        Self {
            competition,
            organizer: Some(organizer),
            registrations: Some(RegistrationView::organizer_listing(
                registrations
                    .into_iter()
                    .map(|(registration, user)| (registration, Some(user))),
            )),
        }
    }
}

impl PlainFields for CompetitionView {
    const TYPE_NAME: &'static str = "Competition";

    fn plain_field(&self, name: &str, selection: &Positioned<SelectionSet>) -> Option<Value> {
        let competition = &self.competition;
        Some(match name {
            "id" => id_value(competition.id),
            "title" => Value::String(competition.title.clone()),
            "description" => Value::String(competition.description.clone()),
            "tags" => Value::List(competition.tags.iter().map(Value::from).collect()),
            "capacity" => competition.capacity.into(),
            "registeredCount" => competition.registered_count.into(),
            "seatsLeft" => competition.seats_left().into(),
            "isOpen" => competition.is_open(Utc::now()).into(),
            "waitlistCount" => competition.waitlist_count.into(),
            "regDeadline" => instant(competition.reg_deadline),
            "startDate" => instant(competition.start_date),
            "createdAt" => instant(competition.created_at),
            "cancelledAt" => maybe_instant(competition.cancelled_at),
            "organizer" => plain::object(self.organizer.as_ref()?, selection)?,
            _ => return None,
        })
    }
}

#[Object(name = "Competition")]
impl CompetitionView {
    async fn id(&self) -> ID {
        id(self.competition.id)
    }
    async fn title(&self) -> &str {
        &self.competition.title
    }
    async fn description(&self) -> &str {
        &self.competition.description
    }
    async fn tags(&self) -> &[String] {
        &self.competition.tags
    }
    async fn capacity(&self) -> i32 {
        self.competition.capacity
    }
    async fn registered_count(&self) -> i32 {
        self.competition.registered_count
    }
    async fn seats_left(&self) -> i32 {
        self.competition.seats_left()
    }
    /// Not cancelled, before the registration deadline and with a seat left.
    async fn is_open(&self) -> bool {
        self.competition.is_open(Utc::now())
    }
    /// Participants on the waiting list.
    async fn waitlist_count(&self) -> i32 {
        self.competition.waitlist_count
    }
    async fn reg_deadline(&self) -> DateTime {
        self.competition.reg_deadline.into()
    }
    async fn start_date(&self) -> DateTime {
        self.competition.start_date.into()
    }
    async fn created_at(&self) -> DateTime {
        self.competition.created_at.into()
    }
    /// When its organizer called it off; null while it stands.
    async fn cancelled_at(&self) -> Option<DateTime> {
        self.competition.cancelled_at.map(DateTime)
    }
    async fn organizer(&self, ctx: &Context<'_>) -> async_graphql::Result<UserView> {
        match &self.organizer {
            Some(organizer) => Ok(UserView(organizer.clone())),
            None => load_user(ctx, self.competition.organizer_id).await,
        }
    }
    /// Only for the competition's organizer (`FORBIDDEN` for anyone else).
    async fn registrations(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<plain::Plain<Cow<'_, RegistrationView>>>> {
        let caller = ctx.caller()?;
        if let Some(read) = &self.registrations {
            registrations::organizer_only(caller, &self.competition)?;
            return Ok(read
                .iter()
                .map(|registration| plain::Plain(Cow::Borrowed(registration)))
                .collect());
        }
        let mut conn = ctx.db().await?;
        // Asked for their users: in the same statement rather than a batch more.
        let listing = if ctx.look_ahead().field("user").exists() {
            registrations::of_competition_with_users(&mut conn, caller, &self.competition)
                .await?
                .into_iter()
                .map(|(registration, user)| (registration, Some(user)))
                .collect()
        } else {
            registrations::of_competition(&mut conn, caller, &self.competition)
                .await?
                .into_iter()
                .map(|registration| (registration, None))
                .collect::<Vec<_>>()
        };
        Ok(RegistrationView::organizer_listing(listing)
            .into_iter()
            .map(|registration| plain::Plain(Cow::Owned(registration)))
            .collect())
    }
}

#[derive(Clone)]
pub struct RegistrationView {
    registration: Registration,
    /// Its competition, when read in the same statement.
    competition: Option<CompetitionView>,
    /// Its user, when read in the same statement.
    user: Option<User>,
    /// Its place on the waiting list, when known from the listing it came in.
    waitlist_place: Option<i64>,
}

impl From<Registration> for RegistrationView {
    fn from(registration: Registration) -> Self {
        Self {
            registration,
            competition: None,
            user: None,
            waitlist_place: None,
        }
    }
}

impl RegistrationView {
    /// An organizer's listing: every registration of its competitions (with their users
    /// when read in the same statement), so the listing itself tells each WAITLISTED one's
    /// place.
    pub fn organizer_listing(
        listing: impl IntoIterator<Item = (Registration, Option<User>)>,
    ) -> Vec<Self> {
        let listing: Vec<(Registration, Option<User>)> = listing.into_iter().collect();
        let places = registrations::waitlist_places_in(listing.iter().map(|(read, _)| read));
        listing
            .into_iter()
            .map(|(registration, user)| Self {
                waitlist_place: places.get(&registration.id).copied(),
                registration,
                competition: None,
                user,
            })
            .collect()
    }

    /// With its competition (and organizer) read in the same statement, and its place on
    /// the waiting list if known.
    pub fn with_competition(
        registration: Registration,
        competition: CompetitionView,
        waitlist_place: Option<i64>,
    ) -> Self {
        Self {
            registration,
            competition: Some(competition),
            user: None,
            waitlist_place,
        }
    }

    /// With its place on the waiting list, if known.
    pub fn with_waitlist_place(registration: Registration, waitlist_place: Option<i64>) -> Self {
        Self {
            waitlist_place,
            ..Self::from(registration)
        }
    }
}

impl PlainFields for RegistrationView {
    const TYPE_NAME: &'static str = "Registration";

    fn plain_field(&self, name: &str, selection: &Positioned<SelectionSet>) -> Option<Value> {
        let registration = &self.registration;
        Some(match name {
            "id" => id_value(registration.id),
            "status" => RegistrationStatusView::from(registration.status).to_value(),
            "createdAt" => instant(registration.created_at),
            "confirmedAt" => maybe_instant(registration.confirmed_at),
            "cancelledAt" => maybe_instant(registration.cancelled_at),
            // Only a place on the waiting list that its listing did not tell needs a read.
            "waitlistPosition" => {
                if registration.status != registrations::RegistrationStatus::Waitlisted {
                    Value::Null
                } else {
                    self.waitlist_place?.into()
                }
            }
            "competition" => plain::object(self.competition.as_ref()?, selection)?,
            "user" => plain::object(self.user.as_ref()?, selection)?,
            _ => return None,
        })
    }
}

#[Object(name = "Registration")]
impl RegistrationView {
    async fn id(&self) -> ID {
        id(self.registration.id)
    }
    async fn status(&self) -> RegistrationStatusView {
        self.registration.status.into()
    }
    async fn created_at(&self) -> DateTime {
        self.registration.created_at.into()
    }
    async fn confirmed_at(&self) -> Option<DateTime> {
        self.registration.confirmed_at.map(DateTime)
    }
    async fn cancelled_at(&self) -> Option<DateTime> {
        self.registration.cancelled_at.map(DateTime)
    }
    /// 1-based place on the waiting list while WAITLISTED (1 gets the next free seat);
    /// null otherwise.
    async fn waitlist_position(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<i64>> {
        if self.registration.status != registrations::RegistrationStatus::Waitlisted {
            return Ok(None);
        }
        if let Some(place) = self.waitlist_place {
            return Ok(Some(place));
        }
        let mut conn = ctx.db().await?;
        let places = registrations::waitlist_places(&mut conn, &[&self.registration]).await?;
        Ok(places.get(&self.registration.id).copied())
    }
    async fn competition(&self, ctx: &Context<'_>) -> async_graphql::Result<CompetitionView> {
        if let Some(competition) = &self.competition {
            return Ok(competition.clone());
        }
        let competition_id = self.registration.competition_id;
        let competition = ctx
            .loader()
            .load_one(CompetitionId(competition_id))
            .await?
            .ok_or_else(|| internal(format!("competition {competition_id} is missing")))?;
        Ok(CompetitionView::from(competition))
    }
    async fn user(&self, ctx: &Context<'_>) -> async_graphql::Result<UserView> {
        if let Some(user) = &self.user {
            return Ok(UserView(user.clone()));
        }
        load_user(ctx, self.registration.user_id).await
    }
}

#[derive(SimpleObject)]
pub struct PageInfo {
    pub has_next_page: bool,
    pub end_cursor: Option<String>,
}

pub struct CompetitionEdge {
    node: CompetitionView,
}

impl CompetitionEdge {
    /// Encoded only when asked for: most listings never select it.
    fn cursor(&self) -> String {
        Cursor::of(&self.node.competition).encode()
    }
}

#[Object]
impl CompetitionEdge {
    #[graphql(name = "cursor")]
    async fn cursor_field(&self) -> String {
        self.cursor()
    }

    async fn node(&self) -> &CompetitionView {
        &self.node
    }
}

impl PlainFields for CompetitionEdge {
    const TYPE_NAME: &'static str = "CompetitionEdge";

    fn plain_field(&self, name: &str, selection: &Positioned<SelectionSet>) -> Option<Value> {
        match name {
            "cursor" => Some(Value::String(self.cursor())),
            "node" => plain::object(&self.node, selection),
            _ => None,
        }
    }
}

/// One page of a listing; `totalCount` is counted only when asked for.
pub struct CompetitionConnection {
    edges: Vec<CompetitionEdge>,
    page_info: PageInfo,
    filter: Filter,
}

impl CompetitionConnection {
    pub fn new(page: Page, filter: Filter) -> Self {
        let end_cursor = page.items.last().map(|last| Cursor::of(last).encode());
        let edges = page
            .items
            .into_iter()
            .zip(page.organizers)
            .map(|(competition, organizer)| CompetitionEdge {
                node: CompetitionView::with_organizer(competition, organizer),
            })
            .collect();
        Self {
            edges,
            page_info: PageInfo {
                has_next_page: page.has_next_page,
                end_cursor,
            },
            filter,
        }
    }
}

impl CompetitionConnection {
    /// The competitions on this page that `organizer` organizes.
    pub fn organized_by(&self, organizer: Uuid) -> Vec<Uuid> {
        self.edges
            .iter()
            .map(|edge| &edge.node.competition)
            .filter(|competition| competition.organizer_id == organizer)
            .map(|competition| competition.id)
            .collect()
    }

    /// Gives each of `competitions` its registrations (with their users) out of `read`,
    /// which holds every registration of those competitions.
    pub fn attach_registrations(&mut self, competitions: &[Uuid], read: Vec<(Registration, User)>) {
        let mut by_competition: HashMap<Uuid, Vec<RegistrationView>> =
            competitions.iter().map(|id| (*id, Vec::new())).collect();
        let listing = read
            .into_iter()
            .map(|(registration, user)| (registration, Some(user)));
        for registration in RegistrationView::organizer_listing(listing) {
            let competition_id = registration.registration.competition_id;
            if let Some(registrations) = by_competition.get_mut(&competition_id) {
                registrations.push(registration);
            }
        }
        for edge in &mut self.edges {
            if let Some(registrations) = by_competition.remove(&edge.node.competition.id) {
                edge.node.registrations = Some(registrations);
            }
        }
    }
}

#[Object]
impl CompetitionConnection {
    async fn edges(&self) -> Vec<plain::Plain<&CompetitionEdge>> {
        self.edges.iter().map(plain::Plain).collect()
    }

    async fn page_info(&self) -> &PageInfo {
        &self.page_info
    }

    /// How many competitions match the filter, on all pages.
    async fn total_count(&self, ctx: &Context<'_>) -> async_graphql::Result<i64> {
        let mut conn = ctx.db().await?;
        Ok(competitions::count(&mut conn, &self.filter).await?)
    }
}

pub struct MailView(pub Mail);

impl PlainFields for MailView {
    const TYPE_NAME: &'static str = "Mail";

    fn plain_field(&self, name: &str, _: &Positioned<SelectionSet>) -> Option<Value> {
        let mail = &self.0;
        Some(match name {
            "id" => id_value(mail.id),
            "kind" => MailKindView::from(mail.kind).to_value(),
            "to" => Value::String(mail.to_address.clone()),
            "subject" => Value::String(mail.subject.clone()),
            "body" => Value::String(mail.body.clone()),
            "sentAt" => instant(mail.sent_at),
            _ => return None,
        })
    }
}

#[Object(name = "Mail")]
impl MailView {
    async fn id(&self) -> ID {
        id(self.0.id)
    }
    async fn kind(&self) -> MailKindView {
        self.0.kind.into()
    }
    async fn to(&self) -> &str {
        &self.0.to_address
    }
    async fn subject(&self) -> &str {
        &self.0.subject
    }
    async fn body(&self) -> &str {
        &self.0.body
    }
    async fn sent_at(&self) -> DateTime {
        self.0.sent_at.into()
    }
}
