-- The app's optional user profiles: the user tower reads age range and region from here when
-- the app has them (id is the user's id, as in likes.user_id). Many apps already have a
-- `profiles` table with columns of their own: `if not exists` leaves that table as it is, and
-- the two `add column if not exists` give it the two nullable columns and change nothing else.
-- Users without a row, or with a NULL field, simply have no demographics.

create table if not exists public.profiles (
  id uuid primary key,
  age_range text,
  region text,
  created_at timestamptz default now()
);
alter table public.profiles add column if not exists age_range text;
alter table public.profiles add column if not exists region text;
