-- The toy schema of ../shared/ceilings/run.sh: the registration SQL with nothing around it.
create table competitions(id int primary key, capacity int, registered_count int not null default 0);
create table registrations(id bigserial primary key, user_id bigint, competition_id int, unique(user_id, competition_id));
create table jobs(id bigserial primary key, payload jsonb, created_at timestamptz default now());
insert into competitions select g, 1000000000, 0 from generate_series(1, 200) g;
