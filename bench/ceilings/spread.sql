\set cid random(1, 200)
-- A per-client sequence (seq starts at 0 with -D): random ids would collide on UNIQUE.
\set seq :seq + 1
\set uid :client_id * 1000000000 + :seq
WITH c AS (UPDATE competitions SET registered_count = registered_count + 1 WHERE id = :cid AND registered_count < capacity RETURNING id), r AS (INSERT INTO registrations(user_id, competition_id) SELECT :uid, id FROM c RETURNING id) INSERT INTO jobs(payload) SELECT '{"t":"confirm"}'::jsonb FROM r;
