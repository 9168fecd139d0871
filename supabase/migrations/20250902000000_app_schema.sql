-- The video-matching app's tables, as the app already has them (design document v2.0,
-- "現在のテーブル"). Column names are a contract with the app: the pipeline only reads them.
-- `if not exists` keeps this a no-op on the app's existing Supabase database.

create extension if not exists vector;

create table if not exists public.videos (
  id uuid primary key default gen_random_uuid(),
  title text,
  description text,
  genre text,
  maker text,
  price numeric,
  duration_seconds integer,
  created_at timestamptz default now()
);
create index if not exists videos_created_at_idx on public.videos (created_at);

create table if not exists public.tags (
  id uuid primary key default gen_random_uuid(),
  name text not null unique
);

create table if not exists public.video_tags (
  video_id uuid not null references public.videos (id) on delete cascade,
  tag_id uuid not null references public.tags (id) on delete cascade,
  primary key (video_id, tag_id)
);
create index if not exists video_tags_tag_id_idx on public.video_tags (tag_id);

create table if not exists public.performers (
  id uuid primary key default gen_random_uuid(),
  name text not null unique
);

create table if not exists public.video_performers (
  video_id uuid not null references public.videos (id) on delete cascade,
  performer_id uuid not null references public.performers (id) on delete cascade,
  primary key (video_id, performer_id)
);
create index if not exists video_performers_performer_id_idx on public.video_performers (performer_id);

-- The app writes likes as they happen; the pipeline does not trust them (unknown videos,
-- duplicates and missing ids are counted and dropped before training).
create table if not exists public.likes (
  id uuid primary key default gen_random_uuid(),
  user_id uuid,
  video_id uuid,
  created_at timestamptz default now()
);
create index if not exists likes_user_id_created_at_idx on public.likes (user_id, created_at);
create index if not exists likes_created_at_idx on public.likes (created_at);
create index if not exists likes_video_id_idx on public.likes (video_id);

-- The app's existing 768-d embeddings; kept as they are for the parts of the app that use them.
create table if not exists public.video_embeddings (
  video_id uuid primary key references public.videos (id) on delete cascade,
  embedding vector(768),
  updated_at timestamptz default now()
);

create table if not exists public.user_embeddings (
  user_id uuid primary key,
  embedding vector(768),
  updated_at timestamptz default now()
);
