-- recommend_videos skips the videos a user already liked: one probe of (user_id, video_id) per
-- candidate the HNSW index returns. Without this index each probe reads all of the user's likes,
-- which is slow for the most active users.
create index if not exists likes_user_id_video_id_idx on public.likes (user_id, video_id);
