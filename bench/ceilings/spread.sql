\set cid random(1, 200)
\set uid random(1, 1000000000)
WITH c AS (UPDATE competitions SET registered_count = registered_count + 1 WHERE id = :cid AND registered_count < capacity RETURNING id), r AS (INSERT INTO registrations(user_id, competition_id) SELECT :uid, id FROM c RETURNING id) INSERT INTO jobs(payload) SELECT '{"t":"confirm"}'::jsonb FROM r;
